"""Run the whole method, stage by stage, and print the results.

    python run_all.py                                   # embedded synthetic demo (~3 min on 2 CPU cores)
    python run_all.py --dataset ped2 --data-root ../shared/data
    python run_all.py --dataset NAME --data-root DIR --pose-model data/models/pose_landmark_full.tflite   # your videos
    python run_all.py --dataset ped2 --data-root ../shared/data --head flatten   # any stage flag is forwarded

Each stage is its own script, run here as a subprocess in order; a stage is skipped when
its outputs exist and were made with the same settings from the same input files after its
inputs (``--force`` reruns everything). When a dataset has raw frames or video files but no
features, stage 0 (``extract_features.py``) makes them first. Every stage's settings and
the input are checked before any training. Results: ``results/NAME/summary.json``, each
recipe's ``results/NAME/RECIPE/``, and per test video a plot, a CSV and (with raw frames)
an annotated video in ``results/NAME/videos/``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from memfuse import data as D
from memfuse.io import InputError, PROJECT_ROOT, checkpoint_dir, folder_lock, results_dir, save_json, save_video_scores
from memfuse.recipes import DEFAULT_RECIPE, did_you_mean, get_recipe, recipe_names
from memfuse.stages import INPUT_STAGES, OUTPUTS, STAGE_ORDER, data_files, file_identity, provenance_path

# Epochs per preset, by stage; "paper" passes none: the stage scripts' own EPOCHS are the
# paper's (autoencoder 1000, memories 5000, fusion 2000)
PRESETS = {
    "paper": {},
    "tiny": {"AE_encoder.py": 2, "train.py": 2, "train_pose.py": 2, "attention_fusion.py": 3},  # smoke tests only
    "quick": {"AE_encoder.py": 50, "train.py": 100, "train_pose.py": 100, "attention_fusion.py": 200},
}
SYNTHETIC = "synthetic"
SCRIPTS = (*STAGE_ORDER, "baseline.py")  # every script run_all runs with settings (stage 0 aside)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False,
                                epilog="Any other flag is a stage setting, forwarded unchanged to every stage that has it "
                                       "(e.g. --head flatten, --no-masking, --smooth-sigma 7; see each stage's --help).")
    p.add_argument("--recipe", default=DEFAULT_RECIPE, help=f"named settings of every stage: {', '.join(recipe_names())} (config/recipes/NAME.toml)")
    p.add_argument("--compare", default=None, help="other recipes to run beside it, comma-separated (default: paper on the synthetic demo, none otherwise; 'none' for none)")
    p.add_argument("--dataset", default=SYNTHETIC, help="dataset name; 'synthetic' makes the embedded demo data if missing")
    p.add_argument("--data-root", default=None, help="folder holding DATASET/ (default: the project's data/)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="epoch counts: quick (the memfuse recipe's, and every recipe's on synthetic data), paper (the paper's; "
                        "paper and reference recipes on real data) or tiny (smoke tests)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="rerun every stage even if its outputs are up to date")
    p.add_argument("--checkpoint-root", default=str(PROJECT_ROOT / "checkpoints"))
    p.add_argument("--results-root", default=str(PROJECT_ROOT / "results"))
    p.add_argument("--pose-model", default=None, help="stage 0 on a dataset without pose.npy: BlazePose's pose_landmark_full.tflite "
                                                     "(memfuse/extract/pose.py says how to get it)")
    p.add_argument("--fast-extract", action="store_true", help="stage 0's speed profile for your own videos (extract_features.py --fast: "
                                                                "a cheaper flow; poses on some frames only, person-shaped boxes only)")
    p.add_argument("--no-annotate", dest="annotate", action="store_false",
                   help="no annotated test videos (written to results/NAME/videos/ when the dataset has raw frames or videos)")
    p.add_argument("--fusion-epochs", type=int, default=None, help="override the preset's fusion epochs")
    p.add_argument("--results-name", default=None, help="write results under results/NAME (default: the dataset name), e.g. for ablations")
    p.add_argument("--jobs", type=int, default=2, help="recipes run side by side (1: one after the other, output on the terminal)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="any stage setting (the globals at the top of a stage script, e.g. HEAD=flatten, STANDARDISE=false), "
                        "forwarded to every stage that has it; repeatable")
    args, rest = p.parse_known_args(argv)
    args.passthrough = rest  # stage flags (--head flatten, --no-masking): checked and forwarded by override_flags
    return args


def stage_module(stage: str):
    """The imported module whose settings ``stage`` runs with: the pose twins run their
    appearance script's main with its settings."""
    import importlib

    return importlib.import_module(Path(stage).stem.replace("_pose", ""))


def stage_settings() -> dict[str, dict[str, object]]:
    """stage script -> {setting name: default}, read from the scripts' globals."""
    from memfuse.cli import COMMON_DEFAULTS

    modules = {stage: stage_module(stage) for stage in SCRIPTS}
    return {stage: {**COMMON_DEFAULTS, **{k: getattr(m, k) for k in m.HELP}} for stage, m in modules.items()}


def passthrough_overrides(tokens: list[str], settings: dict[str, dict[str, object]]) -> list[str]:
    """Stage flags given to run_all.py (``--head flatten``, ``--no-masking``,
    ``--smooth-sigma=7``) -> ``NAME=VALUE`` items for :func:`override_flags`. Raises
    InputError for a flag no stage has (naming the nearest setting) or a missing value."""
    from memfuse.cli import flag_name

    defaults = {name: default for owned in settings.values() for name, default in owned.items()}
    out, i = [], 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--"):
            raise InputError(f"unexpected argument {token!r}")
        flag, has_value, value = token[2:].partition("=")
        name = flag.upper().replace("-", "_")
        negated = name.startswith("NO_") and name not in defaults and isinstance(defaults.get(name[3:]), bool)
        name = name[3:] if negated else name
        if name not in defaults:
            raise InputError(f"{token}: neither run_all.py nor any stage has this flag{did_you_mean(name, defaults, flag_name)}")
        i += 1
        if isinstance(defaults[name], bool) and not has_value:
            value = "false" if negated else "true"
        elif not has_value:
            if i >= len(tokens) or tokens[i].startswith("--"):
                raise InputError(f"{token} needs a value")
            value, i = tokens[i], i + 1
        out.append(f"{name}={value}")
    return out


def override_flags(overrides: list[str], passthrough: list[str] | None = None) -> dict[str, list[str]]:
    """``["HEAD=flatten", "STANDARDISE=false"]`` and stage flags (:func:`passthrough_overrides`)
    -> {stage: its flags}. Raises InputError for a malformed item or a name no stage has
    (naming the nearest known one)."""
    from memfuse.cli import flag_name

    if not overrides and not passthrough:
        return {stage: [] for stage in SCRIPTS}
    settings = stage_settings()
    overrides = [*passthrough_overrides(passthrough or [], settings), *overrides]
    known = sorted({k for v in settings.values() for k in v})
    flags: dict[str, list[str]] = {stage: [] for stage in settings}
    for item in overrides:
        name, sep, value = item.partition("=")
        name = name.strip().upper()
        if not sep or not name:
            raise InputError(f"--set {item!r}: expected NAME=VALUE, e.g. HEAD=flatten")
        if name not in known:
            raise InputError(f"--set {item!r}: no stage has a setting {name}{did_you_mean(name, known)}")
        for stage, owned in settings.items():
            if name not in owned:
                continue
            if isinstance(owned[name], bool):
                if value.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise InputError(f"--set {item!r}: {name} is true or false")
                on = value.strip().lower() in ("true", "1", "yes")
                flags[stage].append(flag_name(name) if on else "--no-" + flag_name(name)[2:])
            else:
                flags[stage] += [flag_name(name), value]
    return flags


def preflight(args: argparse.Namespace, data_root: Path, recipes: list[str]) -> None:
    """Parse and check every stage's settings under every recipe as the stage itself will
    (types, choices, and a stage's own ``check_settings``), before the first stage runs:
    a bad value costs seconds, not the stages trained before the one that reads it. The
    baseline runs once, under the main recipe."""
    from memfuse.cli import configure

    runs = [(stage, recipe, stage_args(stage, args, data_root, recipe) + args.stage_flags[stage]) for recipe in recipes for stage in STAGE_ORDER]
    for stage, recipe, argv in [*runs, ("baseline.py", args.recipe, baseline_args(args, data_root))]:
        module = stage_module(stage)
        g = dict(vars(module))
        configure(g, module.HELP, module.__doc__ or "", argv, prog=f"{stage} (recipe {recipe})", announce=False)
        if hasattr(module, "check_settings"):
            module.check_settings(g)


def stage_args(stage: str, args: argparse.Namespace, data_root: Path, recipe: str) -> list[str]:
    """The command-line flags ``run_all`` passes to one stage under ``recipe``."""
    common = ["--recipe", recipe, "--dataset", args.dataset, "--data-root", str(data_root), "--device", args.device, "--seed", str(args.seed),
              "--checkpoint-root", args.checkpoint_root]
    extra: list[str] = []
    preset = PRESETS[args.preset]
    if stage == "attention_fusion.py" and args.fusion_epochs:
        extra += ["--epochs", str(args.fusion_epochs)]
    elif stage in preset:
        extra += ["--epochs", str(preset[stage])]
    if stage == "attention_fusion.py":
        if args.results_name:
            extra += ["--results-name", args.results_name]
        extra += ["--results-root", args.results_root]
    return common + extra


def baseline_args(args: argparse.Namespace, data_root: Path) -> list[str]:
    """Flags for ``baseline.py``: the AI-VAD baseline on the same features and smoothing."""
    extra = ["--recipe", args.recipe, "--dataset", args.dataset, "--data-root", str(data_root), "--device", args.device, "--seed", str(args.seed),
             "--results-root", args.results_root]
    if args.results_name:
        extra += ["--results-name", args.results_name]
    return extra + args.stage_flags["baseline.py"]


def up_to_date(stage: str, ckpt: Path, argv: list[str], ran: set[str], inputs: dict[str, list[int]]) -> bool:
    """Outputs complete (the stage recorded its finish), made with the same flags from the
    same dataset files (``inputs``: size and mtime of each), and no input stage reran since."""
    if any(dep in ran for dep in INPUT_STAGES[stage]):
        return False
    stamp = ckpt / ".stamps" / f"{stage}.json"
    if not stamp.exists() or not provenance_path(ckpt, stage).exists() or not all((ckpt / o).exists() for o in OUTPUTS[stage]):
        return False
    record = json.loads(stamp.read_text())
    newest_input = max([(ckpt / ".stamps" / f"{d}.json").stat().st_mtime for d in INPUT_STAGES[stage] if (ckpt / ".stamps" / f"{d}.json").exists()] or [0])
    return record.get("argv") == argv and record.get("inputs") == inputs and stamp.stat().st_mtime >= newest_input


def run_stage(script: str, argv: list[str], log: Path | None = None, threads: int | None = None) -> float:
    """Run one stage script; exit with its status if it fails. Returns wall seconds.

    ``log``: append the stage's output to this file instead of the terminal (recipes run
    side by side), and print one line when it is done. ``threads``: torch CPU threads."""
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {})}
    start = time.perf_counter()
    if log is None:
        print(f"\n=== {script} {' '.join(argv)}", flush=True)
        proc = subprocess.run([sys.executable, str(PROJECT_ROOT / script), *argv], cwd=PROJECT_ROOT, env=env)
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as fh:
            fh.write(f"\n=== {script} {' '.join(argv)}\n")
            fh.flush()
            proc = subprocess.run([sys.executable, str(PROJECT_ROOT / script), *argv], cwd=PROJECT_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        if log is not None:
            print("".join(log.read_text().splitlines(keepends=True)[-20:]), file=sys.stderr)
        sys.exit(f"run_all: {script} failed (exit {proc.returncode})" + (f"; its output is in {log}" if log else "; fix the error above")
                 + " and rerun (finished stages are kept)")
    if log is not None:
        print(f"  {script:<28} {seconds:6.1f} s   ({log})", flush=True)
    return seconds


def ensure_features(args: argparse.Namespace, data_root: Path) -> tuple[Path, float | None]:
    """Make the synthetic data, or run stage 0 on raw frames, when features are missing."""
    if args.dataset == SYNTHETIC and not D.feature_path(data_root, SYNTHETIC, "train", "velocity").exists():
        from memfuse.synthetic import SyntheticSpec, make_dataset

        start = time.perf_counter()
        make_dataset(data_root, SYNTHETIC, SyntheticSpec(seed=args.seed))
        print(f"made the synthetic dataset in {data_root / SYNTHETIC}")
        return data_root, time.perf_counter() - start
    resolved = D.resolve_data_root(args.dataset, data_root)
    if D.feature_path(resolved, args.dataset, "train", "velocity").exists():
        return resolved, None
    if any((data_root / args.dataset / "training" / sub).is_dir() for sub in ("frames", "videos")):
        seconds = run_stage("extract_features.py", ["--dataset", args.dataset, "--data-root", str(data_root)]
                            + (["--pose-model", args.pose_model] if args.pose_model else []) + (["--fast"] if args.fast_extract else []))
        return D.resolve_data_root(args.dataset, data_root), seconds
    raise InputError(f"no features for {args.dataset}: expected {D.feature_path(data_root, args.dataset, 'train', 'velocity')} "
                     f"(AI-VAD format), or raw frames in {data_root / args.dataset / 'training' / 'frames'} or video files in "
                     f"{data_root / args.dataset / 'training' / 'videos'} for stage 0")


def run_recipe(args: argparse.Namespace, data_root: Path, recipe: str, times: dict[str, float], skipped: list[str], log: Path | None = None,
               threads: int | None = None) -> dict:
    """Every stage of one recipe (skipping those up to date); returns its metrics.json.
    ``times``: wall seconds per stage (a skipped one's from the run that made its outputs,
    its name added to ``skipped``). ``log`` and ``threads``: see :func:`run_stage`."""
    ckpt = checkpoint_dir(args.dataset, args.checkpoint_root, recipe)
    with folder_lock(ckpt):
        return _run_recipe_stages(args, data_root, recipe, times, skipped, ckpt, log, threads)


def _run_recipe_stages(args: argparse.Namespace, data_root: Path, recipe: str, times: dict[str, float], skipped: list[str], ckpt: Path, log: Path | None,
                       threads: int | None) -> dict:
    ran: set[str] = set()
    for stage in STAGE_ORDER:
        argv_stage = stage_args(stage, args, data_root, recipe) + args.stage_flags[stage]
        inputs = file_identity(data_files(data_root, args.dataset, stage))
        if not args.force and up_to_date(stage, ckpt, argv_stage, ran, inputs):
            print(f"=== {stage} ({recipe}): up to date, skipped")
            # its time as measured by the run that made its outputs, so that the summary
            # of a resumed run still lists every stage
            times[f"{recipe}/{stage}"] = json.loads((ckpt / ".stamps" / f"{stage}.json").read_text()).get("seconds")
            skipped.append(f"{recipe}/{stage}")
            continue
        times[f"{recipe}/{stage}"] = round(run_stage(stage, argv_stage, log, threads), 2)
        save_json(ckpt / ".stamps" / f"{stage}.json", {"argv": argv_stage, "inputs": inputs, "seconds": times[f"{recipe}/{stage}"]})
        ran.add(stage)
    return json.loads((results_dir(f"{args.results_name or args.dataset}/{recipe}", args.results_root) / "metrics.json").read_text())


def run_recipes(args: argparse.Namespace, data_root: Path, recipes: list[str], times: dict[str, float], skipped: list[str]) -> dict[str, dict]:
    """One recipe: its stages in order, output on the terminal. Several: side by side, one
    thread each, the CPU threads shared among them and each recipe's output in
    ``results/NAME/RECIPE/run.log`` (their stages are independent of each other)."""
    if len(recipes) == 1 or args.jobs <= 1:
        return {r: run_recipe(args, data_root, r, times, skipped) for r in recipes}
    from concurrent.futures import ThreadPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // len(recipes))
    logs = {r: results_dir(f"{args.results_name or args.dataset}/{r}", args.results_root) / "run.log" for r in recipes}
    for r, log in logs.items():
        log.write_text("")
        print(f"=== recipe {r}: running, output in {log}", flush=True)
    with ThreadPoolExecutor(max_workers=len(recipes)) as pool:
        futures = {r: pool.submit(run_recipe, args, data_root, r, times, skipped, logs[r], threads) for r in recipes}
        return {r: f.result() for r, f in futures.items()}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    recipes = [args.recipe]
    compare = args.compare if args.compare is not None else ("paper" if args.dataset == SYNTHETIC else "none")
    recipes += [r.strip() for r in compare.split(",") if r.strip() and r.strip() != "none" and r.strip() != args.recipe]
    try:
        for r in recipes:
            get_recipe(r)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    args.stage_flags = override_flags(args.overrides, args.passthrough)  # before any stage runs: a typo costs nothing
    args.preset = args.preset or get_recipe(args.recipe).preset or ("quick" if args.dataset == SYNTHETIC else "paper")
    from memfuse.cli import check_dataset_name, check_seed

    try:
        check_dataset_name(args.dataset)
        check_seed(args.seed)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if args.data_root and not Path(args.data_root).is_dir():
        raise InputError(f"--data-root {args.data_root}: no such folder")
    data_root = raw_root = Path(args.data_root) if args.data_root else PROJECT_ROOT / "data"
    preflight(args, data_root, recipes)
    data_root, stage0_seconds = ensure_features(args, data_root)
    summary = D.validate_dataset(data_root, args.dataset)
    print(f"{args.dataset}: {summary['train']['frames']} train frames / {summary['train']['objects']} objects, "
          f"{summary['test']['frames']} test frames / {summary['test']['objects']} objects, velocity bins {summary['velocity_bins']}")
    if summary["test"]["no_auc"]:
        print(f"{args.dataset}: {summary['test']['no_auc']}; every method's scores are written, with no AUC")
    times: dict[str, float] = {}
    if stage0_seconds is not None:
        times["stage0_features"] = round(stage0_seconds, 2)
    skipped: list[str] = []
    results = run_recipes(args, data_root, recipes, times, skipped)
    out = results_dir(args.results_name or args.dataset, args.results_root)
    times["baseline.py"] = round(run_stage("baseline.py", baseline_args(args, data_root)), 2)
    baseline = json.loads((out / "baseline_metrics.json").read_text())["baseline"]
    ends = D.load_clip_lengths(data_root, args.dataset, "test", results[args.recipe]["n_test_frames"])
    labels = D.load_labels(data_root, args.dataset, ends, required=False)
    kinds_file = data_root / args.dataset / "anomaly_kinds.npy"
    scores = {r: np.load(out / r / "scores.npy") for r in recipes}
    scores["AI-VAD baseline"] = np.load(out / "baseline_scores.npy")
    report = {"dataset": args.dataset, "preset": args.preset, "seed": args.seed, "data": summary, "stage_seconds": times,
              "stages_skipped": sorted(skipped),  # up to date: their stage_seconds are those of the run that made them
              "recipes": {r: {k: m[k] for k in ("micro_auc", "macro_auc", "eer", "oracle_micro_auc", "oracle_epoch", "term_micro_auc", "settings")
                              if k in m} for r, m in results.items()},
              "baseline": {k: baseline[k] for k in ("micro_auc", "macro_auc", "eer", "per_modality")}}
    if summary["test"]["no_auc"]:
        report["no_auc"] = summary["test"]["no_auc"]
    elif kinds_file.exists():
        report["per_kind_micro_auc"] = per_kind(scores, np.load(kinds_file), ends, labels)
    plot_comparison(out, args.dataset, scores, ends, labels)
    if args.annotate:
        report["annotated_videos"] = annotate(out, args.dataset, args.recipe, raw_root, data_root, labels)
    save_json(out / "summary.json", report)
    print_table(report, out)
    return report


def per_kind(scores: dict[str, np.ndarray], kinds: np.ndarray, ends: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, float]]:
    """Synthetic data only: micro AUC of each method over the test videos of each anomaly kind."""
    from memfuse.metrics import micro_auc, video_slices

    slices = video_slices(ends)
    return {name: {str(k): micro_auc(np.concatenate([s[v] for v, kk in zip(slices, kinds) if kk == k]),
                                     np.concatenate([labels[v] for v, kk in zip(slices, kinds) if kk == k])) for k in sorted(set(kinds))}
            for name, s in scores.items()}


def plot_comparison(out: Path, dataset: str, scores: dict[str, np.ndarray], ends: np.ndarray, labels: np.ndarray | None) -> None:
    """ROC curves, and per test video a plot and a CSV of the scores of every recipe and the
    AI-VAD baseline together."""
    from memfuse.metrics import micro_auc, why_no_auc
    from memfuse.plots import plot_roc, plot_videos

    if why_no_auc(labels) is None:
        plot_roc({n: (s, micro_auc(s, labels)) for n, s in scores.items()}, labels, out / "roc.png", f"{dataset}: frame-level ROC")
    plot_videos(scores, labels, ends, out / "videos")
    save_video_scores(out / "videos", scores, ends, labels)


def annotate(out: Path, dataset: str, recipe: str, raw_root: Path, data_root: Path, labels: np.ndarray | None) -> str:
    """Annotated test videos of ``recipe`` in ``out/videos/`` when the dataset's raw test
    frames (or videos) and boxes are at hand; returns what was done, for the summary."""
    from memfuse.annotate import write_annotated_videos
    from memfuse.extract.frames import list_split_videos, load_boxes

    boxes_file = next((r / dataset / f"{dataset}_bboxes_test.npy" for r in (data_root, raw_root) if (r / dataset / f"{dataset}_bboxes_test.npy").exists()), None)
    if boxes_file is None or not any((raw_root / dataset / "testing" / sub).is_dir() for sub in ("frames", "videos")):
        return "none: no raw test frames or boxes"
    object_file = out / recipe / "object_scores.npy"
    start = time.perf_counter()
    paths = write_annotated_videos(list_split_videos(raw_root / dataset / "testing"), load_boxes(boxes_file), np.load(out / recipe / "scores.npy"),
                                   np.load(object_file) if object_file.exists() else None, labels, out / "videos")
    print(f"  annotated {len(paths)} test videos ({recipe}) in {out / 'videos'} ({time.perf_counter() - start:.0f} s)")
    return f"{len(paths)} videos of {recipe} in videos/"


def print_table(report: dict, out: Path) -> None:
    """One row per method: micro / macro AUC, EER (and the test-selected figure, labelled)."""
    rows = {r: m for r, m in report["recipes"].items()}
    rows["AI-VAD baseline"] = report["baseline"]
    print(f"\n{report['dataset']} ({report['data']['test']['frames']} test frames, preset {report['preset']}, seed {report['seed']})")
    print(f"  {'method':<20} {'micro AUC':>9} {'macro AUC':>9} {'EER':>7}   test-selected epoch (not a fair figure)")
    if "no_auc" in report:
        print(f"  no AUC: {report['no_auc']}; the scores of every method are in {out}")
    for name, m in rows.items():
        if m["micro_auc"] is None:
            continue
        oracle = f"{m['oracle_micro_auc']:.4f} (epoch {m['oracle_epoch']})" if "oracle_micro_auc" in m else ""
        print(f"  {name:<20} {m['micro_auc']:>9.4f} {m['macro_auc']:>9.4f} {m['eer']:>7.4f}   {oracle}")
    for name, kinds in report.get("per_kind_micro_auc", {}).items():
        print(f"  {name:<20} micro AUC by anomaly kind: " + ", ".join(f"{k} {v:.4f}" for k, v in kinds.items()))
    skipped = set(report["stages_skipped"])
    print("  stage wall times (s; * = up to date, time of the run that made it): "
          + ", ".join(f"{k} {v}" + ("*" if k in skipped else "") for k, v in report["stage_seconds"].items()))
    print(f"  -> {out / 'summary.json'}; each recipe's scores and plots in {out}/<recipe>/")


if __name__ == "__main__":
    try:
        main()
    except InputError as exc:
        sys.exit(f"error: {exc}")

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
from typing import Any

import numpy as np

from memfuse import config, registry, report
from memfuse import data as D
from memfuse.io import PROJECT_ROOT, InputError, checkpoint_dir, folder_lock, results_dir, save_json
from memfuse.pipeline import SYNTHETIC, data_files, ensure_synthetic, file_identity, provenance_path

RUN_SETTINGS = (
    "RECIPE",
    "CONFIG",
    "DATASET",
    "DATA_ROOT",
    "DEVICE",
    "SEED",
    "CHECKPOINT_ROOT",
    "RESULTS_ROOT",
    "RESULTS_NAME",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """run_all's flags: the settings of the run every script shares (:data:`RUN_SETTINGS`,
    as the scripts spell them), its own, and any stage flag (:func:`route_flags`)."""
    defaults = {n: {**config.COMMON, **config.SHARED}[n][0] for n in RUN_SETTINGS}
    for name, folder in (("DATA_ROOT", "data"), ("CHECKPOINT_ROOT", "checkpoints"), ("RESULTS_ROOT", "results")):
        defaults[name] = str(PROJECT_ROOT / folder)  # the project's folders, wherever run_all is started from
    p = config.parser_for(defaults, {}, description=__doc__.split("\n")[0], epilog=EPILOG)
    p.add_argument(
        "--compare", help="other recipes beside it, comma-separated (default: paper on synthetic data, else none)"
    )
    p.add_argument("--force", action="store_true", help="rerun every stage even if its outputs are up to date")
    p.add_argument("--no-annotate", dest="ANNOTATE", action="store_false", help="no annotated test videos")
    p.add_argument(
        "--jobs", type=int, default=2, help="recipes run side by side (1: one after the other, on the terminal)"
    )
    given, rest = p.parse_known_args(argv)
    for name in ("CHECKPOINT_ROOT", "RESULTS_ROOT"):  # a stage records its folders: one spelling of each
        setattr(given, name, str(Path(getattr(given, name)).resolve()))
    return argparse.Namespace(**{k.lower(): v for k, v in vars(given).items()}, stage_flags=route_flags(rest))


EPILOG = (
    "Any other flag is a setting of a stage script (the globals at its top), forwarded to the scripts that take it: "
    "--fusion-epochs 50, --head flatten, --no-masking, --pose-model PATH, --fast-extract; see each script's --help."
)


def route_flags(tokens: list[str]) -> dict[str, list[str]]:
    """Stage flags given to run_all.py (``--head flatten``, ``--no-masking``) -> {script:
    the flags it takes}, each to every script that has the setting. Parsed as the stages
    parse them, so a bad value or a flag no script has stops here (naming the nearest)."""
    owners = config.known_settings()
    defaults = {n: config.script_settings(scripts[0])[n] for n, scripts in owners.items() if n not in config.COMMON}
    parser = config.parser_for(defaults, {}, prog="run_all.py")
    parser.set_defaults(**{n: None for n in defaults})  # None: not given (the types still apply to what is)
    given, unknown = parser.parse_known_args(tokens)
    if unknown:
        nearest = config.did_you_mean(unknown[0].split("=")[0], map(config.flag_name, owners))
        raise InputError(f"{unknown[0]}: neither run_all.py nor any stage has this flag{nearest}")
    given = {n: v for n, v in vars(given).items() if v is not None}
    return {s: config.as_flags({n: v for n, v in given.items() if s in owners[n]}) for s in registry.CONFIGURED_SCRIPTS}


def script_argv(script: str, args: argparse.Namespace, data_root: Path, recipe: str) -> list[str]:
    """The flags ``run_all`` passes to ``script`` under ``recipe``: the run's settings that
    the script takes, and the stage flags routed to it (:func:`route_flags`)."""
    run = {**{n: getattr(args, n.lower()) for n in RUN_SETTINGS}, "RECIPE": recipe, "DATA_ROOT": str(data_root)}
    taken = config.script_settings(script)
    return (
        config.as_flags({n: v for n, v in run.items() if n in taken and v != ""})
        + args.stage_flags[registry.stage(script).settings_script]
    )


def preflight(args: argparse.Namespace, data_root: Path, recipes: list[str]) -> None:
    """Parse and check every stage's settings under every recipe as the stage itself will
    (types, choices, and a script's own ``check_settings``), before the first stage runs:
    a bad value costs seconds, not the stages trained before the one that reads it. The
    baseline runs once, under the main recipe."""
    runs = [(s, r) for r in recipes for s in registry.STAGE_ORDER] + [(registry.BASELINE.script, args.recipe)]
    for script, recipe in runs:
        module, g, _ = configured(script, script_argv(script, args, data_root, recipe), f"{script} (recipe {recipe})")
        getattr(module, "check_settings", lambda _: None)(g)


def configured(script: str, argv: list[str], prog: str | None = None) -> tuple[Any, dict, dict]:
    """``script``'s settings as the stage itself resolves them from ``argv``: its module,
    a copy of its globals configured (the config layers and flags applied) and the
    settings it would run with and record."""
    import importlib

    module = importlib.import_module(Path(registry.stage(script).settings_script).stem)
    g = dict(vars(module))
    return module, g, config.configure(g, script, argv, prog=prog or script, quiet=True)


def resolved_settings(script: str, argv: list[str]) -> dict:
    """The settings ``script`` would run with given ``argv``: its globals as they are now."""
    return configured(script, argv)[2]


def up_to_date(stage: str, ckpt: Path, argv: list[str], ran: set[str], inputs: dict[str, list[int]]) -> bool:
    """Outputs complete (the stage recorded its finish), made with the same flags and the
    same settings (a global edited at a script's top, or a new default, reruns it) from the
    same dataset files (``inputs``: size and mtime of each), and no input stage reran since."""
    if any(dep in ran for dep in registry.stage(stage).inputs):
        return False
    stamp = ckpt / ".stamps" / f"{stage}.json"
    if (
        not stamp.exists()
        or not provenance_path(ckpt, stage).exists()
        or not all((ckpt / o).exists() for o in registry.stage(stage).outputs)
    ):
        return False
    recorded = json.loads(provenance_path(ckpt, stage).read_text())
    if recorded != json.loads(json.dumps(resolved_settings(stage, argv))):
        return False
    record = json.loads(stamp.read_text())
    newest_input = max(
        [
            (ckpt / ".stamps" / f"{d}.json").stat().st_mtime
            for d in registry.stage(stage).inputs
            if (ckpt / ".stamps" / f"{d}.json").exists()
        ]
        or [0]
    )
    return record.get("argv") == argv and record.get("inputs") == inputs and stamp.stat().st_mtime >= newest_input


def run_script(script: str, argv: list[str], log: Path | None = None, threads: int | None = None) -> float:
    """Run one script; exit with its status if it fails. Returns wall seconds.

    ``log``: append the script's output to this file instead of the terminal (recipes run
    side by side), and print one line when it is done. ``threads``: torch CPU threads."""
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {})}
    start = time.perf_counter()
    cmd = [sys.executable, str(PROJECT_ROOT / script), *argv]
    if log is None:
        print(f"\n=== {script} {' '.join(argv)}", flush=True)
        proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env)
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as fh:
            fh.write(f"\n=== {script} {' '.join(argv)}\n")
            fh.flush()
            proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        if log is not None:
            print("".join(log.read_text().splitlines(keepends=True)[-20:]), file=sys.stderr)
        sys.exit(
            f"run_all: {script} failed (exit {proc.returncode})"
            + (f"; its output is in {log}" if log else "; fix the error above")
            + " and rerun (finished stages are kept)"
        )
    if log is not None:
        print(f"  {script:<28} {seconds:6.1f} s   ({log})", flush=True)
    return seconds


def ensure_features(args: argparse.Namespace, data_root: Path) -> tuple[Path, float | None]:
    """Make the synthetic data, or run stage 0 on raw frames or videos, when features are missing."""
    start = time.perf_counter()
    if ensure_synthetic(data_root, args.dataset, args.seed):
        return data_root, time.perf_counter() - start
    resolved = D.resolve_data_root(args.dataset, data_root)
    if D.feature_path(resolved, args.dataset, "train", "vel").exists():
        return resolved, None
    if any((data_root / args.dataset / "training" / sub).is_dir() for sub in ("frames", "videos")):
        seconds = run_script(
            registry.EXTRACT.script, script_argv(registry.EXTRACT.script, args, data_root, args.recipe)
        )
        return D.resolve_data_root(args.dataset, data_root), seconds
    raise InputError(
        f"no features for {args.dataset}: expected {D.feature_path(data_root, args.dataset, 'train', 'vel')} "
        f"(AI-VAD format), or raw frames in {data_root / args.dataset / 'training' / 'frames'} or video files in "
        f"{data_root / args.dataset / 'training' / 'videos'} for stage 0"
    )


def run_recipe(
    args: argparse.Namespace,
    data_root: Path,
    recipe: str,
    times: dict[str, float],
    skipped: list[str],
    log: Path | None = None,
    threads: int | None = None,
) -> dict:
    """Every stage of one recipe (skipping those up to date); returns its metrics.json.
    ``times``: wall seconds per stage (a skipped one's from the run that made its outputs,
    its name added to ``skipped``). ``log`` and ``threads``: see :func:`run_stage`."""
    ckpt = checkpoint_dir(args.dataset, args.checkpoint_root, recipe)
    with folder_lock(ckpt):
        return _run_recipe_stages(args, data_root, recipe, times, skipped, ckpt, log, threads)


def _run_recipe_stages(
    args: argparse.Namespace,
    data_root: Path,
    recipe: str,
    times: dict[str, float],
    skipped: list[str],
    ckpt: Path,
    log: Path | None,
    threads: int | None,
) -> dict:
    ran: set[str] = set()
    for stage in registry.STAGE_ORDER:
        argv_stage = script_argv(stage, args, data_root, recipe)
        inputs = file_identity(data_files(data_root, args.dataset, stage))
        if not args.force and up_to_date(stage, ckpt, argv_stage, ran, inputs):
            print(f"=== {stage} ({recipe}): up to date, skipped")
            # its time as measured by the run that made its outputs, so that the summary
            # of a resumed run still lists every stage
            times[f"{recipe}/{stage}"] = json.loads((ckpt / ".stamps" / f"{stage}.json").read_text()).get("seconds")
            skipped.append(f"{recipe}/{stage}")
            continue
        times[f"{recipe}/{stage}"] = round(run_script(stage, argv_stage, log, threads), 2)
        save_json(
            ckpt / ".stamps" / f"{stage}.json",
            {"argv": argv_stage, "inputs": inputs, "seconds": times[f"{recipe}/{stage}"]},
        )
        ran.add(stage)
    return json.loads(
        (results_dir(f"{args.results_name or args.dataset}/{recipe}", args.results_root) / "metrics.json").read_text()
    )


def run_recipes(
    args: argparse.Namespace, data_root: Path, recipes: list[str], times: dict[str, float], skipped: list[str]
) -> dict[str, dict]:
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
    compare = args.compare if args.compare is not None else ("paper" if args.dataset == SYNTHETIC else "none")
    recipes = [args.recipe] + [
        r for r in (c.strip() for c in compare.split(",") if c.strip()) if r not in ("none", args.recipe)
    ]
    for r in recipes:
        config.recipe_path(r)
    config.check_dataset_name(args.dataset)
    if not Path(args.data_root).is_dir():
        raise InputError(f"--data-root {args.data_root}: no such folder")
    data_root = raw_root = Path(args.data_root)
    preflight(args, data_root, recipes)
    data_root, stage0_seconds = ensure_features(args, data_root)
    summary = D.validate_dataset(data_root, args.dataset)
    print(
        f"{args.dataset}: {summary['train']['frames']} train frames / {summary['train']['objects']} objects, "
        f"{summary['test']['frames']} test frames / {summary['test']['objects']} objects, "
        f"velocity bins {summary['velocity_bins']}"
    )
    if summary["test"]["no_auc"]:
        print(f"{args.dataset}: {summary['test']['no_auc']}; every method's scores are written, with no AUC")
    times: dict[str, float] = {} if stage0_seconds is None else {"stage0_features": round(stage0_seconds, 2)}
    skipped: list[str] = []
    results = run_recipes(args, data_root, recipes, times, skipped)
    out = results_dir(args.results_name or args.dataset, args.results_root)
    baseline = registry.BASELINE.script
    times[baseline] = round(run_script(baseline, script_argv(baseline, args, data_root, args.recipe)), 2)
    baseline_metrics = json.loads((out / "baseline_metrics.json").read_text())["baseline"]
    ends = D.load_clip_lengths(data_root, args.dataset, "test", results[args.recipe]["n_test_frames"])
    labels = D.load_labels(data_root, args.dataset, ends, required=False)
    kinds_file = data_root / args.dataset / "anomaly_kinds.npy"
    scores = {r: np.load(out / r / "scores.npy") for r in recipes}
    scores["AI-VAD baseline"] = np.load(out / "baseline_scores.npy")
    keys = ("micro_auc", "macro_auc", "eer", "oracle_micro_auc", "oracle_epoch", "term_micro_auc", "settings")
    summary_json = {
        "dataset": args.dataset,
        "seed": args.seed,
        "configs": [c.strip() for c in args.config.split(",") if c.strip()],
        "data": summary,
        "stage_seconds": times,
        "stages_skipped": sorted(skipped),  # up to date: their stage_seconds are those of the run that made them
        "recipes": {r: {k: m[k] for k in keys if k in m} for r, m in results.items()},
        "baseline": {k: baseline_metrics[k] for k in ("micro_auc", "macro_auc", "eer", "per_modality")},
        "detector": results[args.recipe].get("detector"),  # the trained detector's folder, for detect.py
    }
    if summary["test"]["no_auc"]:
        summary_json["no_auc"] = summary["test"]["no_auc"]
    elif kinds_file.exists():
        summary_json["per_kind_micro_auc"] = report.per_kind(scores, np.load(kinds_file), ends, labels)
    report.write_comparison(out, args.dataset, scores, ends, labels)
    if args.annotate:
        summary_json["annotated_videos"] = report.annotate(out, args.dataset, args.recipe, raw_root, data_root, labels)
    save_json(out / "summary.json", summary_json)
    report.print_table(summary_json, out)
    if summary_json["detector"]:
        print(f"detector: {summary_json['detector']}  (python detect.py {summary_json['detector']} VIDEO --out DIR)")
    return summary_json


if __name__ == "__main__":
    try:
        main()
    except InputError as exc:
        sys.exit(f"error: {exc}")

"""Recipes and ablations over seeds, one run_all.py run per (variant, seed), in one table.

    python bench/ablations.py   # synthetic data, the scripts' epochs, seeds 0-4, every variant
    python bench/ablations.py --dataset ped2 --data-root ../shared/data --only memfuse,paper

A variant is a recipe plus stage flags given to run_all.py (``--extrapolate 0``). The variants
of one seed share a checkpoint folder, ordered so that consecutive runs rerun only the
stages whose settings changed. Sweeps over different seeds may run side by side (e.g. one
per core, OMP_NUM_THREADS=1); two sweeps of one seed would share its checkpoints, so must
not. Results go to results/<dataset>_<variant>_s<seed>/. Besides each run's own score,
the score-term ablation is read from each run's score_terms.npz (every term's raw test
and reference values): the classifier alone, the memory terms alone, subsets combined as
the run combined them, and all terms by every combination of memfuse/scoring.py, with no
further training.

The table (markdown: mean and worst over seeds of the micro AUC, mean macro AUC) is printed
and written with every figure to results/<dataset>_ablations.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memfuse import data as D  # noqa: E402
from memfuse.io import save_json  # noqa: E402
from memfuse.metrics import evaluate, smooth_scores  # noqa: E402
from memfuse.scoring import COMBINES, TERMS, combine  # noqa: E402

FAILURE_TAIL_BYTES = 4000  # of a run's stderr, kept to find why it failed

# name -> (recipe, run_all stage flags, what it shows); memfuse first, then memfuse
# without one of its parts, then the paper with one part added
VARIANTS = {
    "memfuse": ("memfuse", [], "the default recipe"),
    "memfuse-no-extrapolate": (
        "memfuse",
        ["--extrapolate", "0"],
        "memfuse with the paper's pseudo-anomalies (ranks 6-10 mixture)",
    ),
    "memfuse-no-velocity-pass": (
        "memfuse",
        ["--velocity-anomaly-scale", "0"],
        "memfuse without the pseudo-anomalous velocity pass",
    ),
    "memfuse-flatten-head": (
        "memfuse",
        ["--head", "flatten", "--hidden", "256"],
        "memfuse with the paper's flatten head",
    ),
    "memfuse-no-standardise": ("memfuse", ["--no-standardise"], "memfuse on raw inputs"),
    "paper": ("paper", [], "the method as specified"),
    "paper+velocity-pass": ("paper", ["--velocity-anomaly-scale", "3"], "the paper plus the velocity pass"),
    "paper+extrapolate": ("paper", ["--extrapolate", "1"], "the paper plus pseudo-anomalies away from memory"),
    "paper+pool-head": ("paper", ["--head", "pool", "--hidden", "64"], "the paper plus the pooled head"),
    "paper+standardise": ("paper", ["--standardise"], "the paper on standardised inputs"),
    "reference": ("reference", [], "the paper with every quirk of the authors' scripts"),
}
# score-term subsets re-scored from score_terms.npz (calibrated as the run did, combined, smoothed); every
# combination of memfuse.scoring over all the run's terms is added
TERM_SETS = {
    "classifier": ("classifier",),
    "classifier+vel": ("classifier", "vel"),
    "classifier+app+pose+vel": ("classifier", "app", "pose", "vel"),
    "app+app_rec+pose+vel": ("app", "app_rec", "pose", "vel"),
    "classifier+app+app_rec+pose+vel": ("classifier", "app", "app_rec", "pose", "vel"),
    "vel+vel_dir": ("vel", "vel_dir"),
    # the default before app_knn: the nearest memory item's distance as the appearance term
    "default with app for app_knn": ("classifier", "app", "app_rec", "pose", "vel", "vel_dir"),
    "default with app and app_knn": ("classifier", "app", "app_rec", "app_knn", "pose", "vel", "vel_dir"),
    # the default with the speed relative to box height (vel_rel) for the plain speed
    "default with vel_rel": ("classifier", "app_rec", "app_knn", "pose", "vel_rel", "vel_dir"),
    "classifier+vel_rel": ("classifier", "vel_rel"),
}


def failure_reason(stderr_tail: str) -> str:
    """The first ``error:`` line of a failed run's stderr (else its last line), up to its
    first ';' (the advice that follows is for a person at the terminal)."""
    lines = [ln.strip() for ln in stderr_tail.replace("\r", "\n").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    line = (errors or lines or ["no message"])[0 if errors else -1]
    return line.removeprefix("error:").split(";")[0].strip()


def run_variant(args: argparse.Namespace, name: str, seed: int) -> dict:
    recipe, overrides, _ = VARIANTS[name]
    results_name = f"{args.dataset}_{name}_s{seed}"
    cmd = [
        sys.executable,
        str(ROOT / "run_all.py"),
        "--dataset",
        args.dataset,
        "--recipe",
        recipe,
        "--compare",
        "none",
        "--seed",
        str(seed),
        "--checkpoint-root",
        str(Path(args.checkpoint_root) / f"seed{seed}"),
        "--results-name",
        results_name,
        "--no-annotate",
        *overrides,
    ] + (["--config", args.config] if args.config else [])
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    print(f"\n##### {name}, seed {seed}: {' '.join(cmd[1:])}", flush=True)
    start = time.perf_counter()
    # stderr goes on to the terminal as it comes (progress bars included); its tail is kept
    # so that a failed run records why
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE)
    tail = b""
    for chunk in iter(lambda: proc.stderr.read1(4096), b""):
        sys.stderr.buffer.write(chunk)
        sys.stderr.flush()
        tail = (tail + chunk)[-FAILURE_TAIL_BYTES:]
    if proc.wait():
        return {"failed": True, "reason": failure_reason(tail.decode(errors="replace"))}
    out = ROOT / "results" / results_name
    m = json.loads((out / recipe / "metrics.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    row = {
        "micro_auc": m["micro_auc"],
        "macro_auc": m["macro_auc"],
        "eer": m["eer"],
        "oracle_micro_auc": m.get("oracle_micro_auc"),
        "oracle_epoch": m.get("oracle_epoch"),
        "baseline_micro_auc": summary["baseline"]["micro_auc"],
        "wall_seconds": round(time.perf_counter() - start, 1),
        "stage_seconds": summary["stage_seconds"],
    }
    saved = np.load(out / recipe / "score_terms.npz")
    have = tuple(t for t in TERMS if f"test_{t}" in saved)
    reference = {t: saved[f"reference_{t}"] for t in have}
    test = {t: saved[f"test_{t}"] for t in have}
    how = m["settings"].get("SCORE_COMBINE", "z")
    data_root = D.resolve_data_root(args.dataset, Path(args.data_root) if args.data_root else ROOT / "data")
    ends = D.load_clip_lengths(data_root, args.dataset, "test", m["n_test_frames"])
    labels = D.load_labels(data_root, args.dataset, ends)
    sigma, per_video = m["settings"]["SMOOTH_SIGMA"], m["settings"]["SMOOTH_PER_VIDEO"]

    def rescored(ts: tuple[str, ...], how: str) -> dict:
        total = combine(reference, test, tuple(t for t in ts if t in have), how)[0]
        return evaluate(smooth_scores(total, ends, sigma, per_video), labels, ends)

    row["term_sets"] = {k: rescored(ts, how) for k, ts in TERM_SETS.items()}
    row["term_sets"] |= {f"all terms, {c}": rescored(have, c) for c in COMBINES}
    return row


def table(rows: dict[str, dict[int, dict]]) -> str:
    """Markdown: one line per variant (and per score-term subset of it)."""
    lines = [
        "| variant | score | seeds | micro AUC mean | worst | macro AUC mean | EER mean | micro AUC per seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, by_seed in rows.items():
        ok = [r for r in by_seed.values() if not r.get("failed")]
        failed = len(by_seed) - len(ok)
        seeds = f"{len(ok)}" + (f" (+{failed} failed)" if failed else "")
        if not ok:
            lines.append(f"| {name} | | {seeds} | | | | | |")
            continue
        entries = [("as run", [(r["micro_auc"], r["macro_auc"], r["eer"]) for r in ok])]
        entries += [
            (
                k,
                [
                    (r["term_sets"][k]["micro_auc"], r["term_sets"][k]["macro_auc"], r["term_sets"][k]["eer"])
                    for r in ok
                ],
            )
            for k in ok[0]["term_sets"]
            if all(k in r["term_sets"] for r in ok)  # rows measured by older code lack the newer sets
        ]
        per_seed = ", ".join(
            f"s{k} {r['micro_auc'] * 100:.1f}" for k, r in sorted(by_seed.items()) if not r.get("failed")
        )
        for label, vals in entries:
            v = np.array(vals) * 100
            lines.append(
                f"| {name} | {label} | {seeds} | {v[:, 0].mean():.1f} | {v[:, 0].min():.1f} | {v[:, 1].mean():.1f} "
                f"| {v[:, 2].mean():.1f} | {per_seed if label == 'as run' else ''} |"
            )
    return "\n".join(lines)


def runs_table(rows: dict[str, dict[str, dict]], dataset: str) -> str:
    """Markdown: one line per (variant, seed) run, with the test-selected diagnostic and
    the wall time of all its stages."""
    lines = [
        "| variant | seed | micro AUC | macro AUC | EER | test-selected (**not a fair figure**) "
        "| wall s (all stages) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in VARIANTS:
        for seed, r in sorted(rows.get(name, {}).items(), key=lambda kv: int(kv[0])):
            if r.get("failed"):
                lines.append(f"| {name} | {seed} | failed: {r.get('reason', 'no reason recorded')} | | | | |")
                continue
            epoch = r.get("oracle_epoch")
            if epoch is None:  # runs recorded before the epoch was: read it from the run's metrics
                metrics = ROOT / "results" / f"{dataset}_{name}_s{seed}" / VARIANTS[name][0] / "metrics.json"
                epoch = json.loads(metrics.read_text()).get("oracle_epoch") if metrics.exists() else None
            oracle = (
                f"{r['oracle_micro_auc'] * 100:.1f}" + (f" (epoch {epoch})" if epoch is not None else "")
                if r.get("oracle_micro_auc")
                else ""
            )
            lines.append(
                f"| {name} | {seed} | {r['micro_auc'] * 100:.1f} | {r['macro_auc'] * 100:.1f} | {r['eer'] * 100:.1f} "
                f"| {oracle} | {r['wall_seconds']:.0f} |"
            )
    return "\n".join(lines)


# each part of memfuse: (the variant without it, the paper with only it)
PARTS = {
    "pseudo-anomalies away from the memory (EXTRAPOLATE)": ("memfuse-no-extrapolate", "paper+extrapolate"),
    "the velocity pass (VELOCITY_ANOMALY_SCALE)": ("memfuse-no-velocity-pass", "paper+velocity-pass"),
    "the pooled head (HEAD, HIDDEN)": ("memfuse-flatten-head", "paper+pool-head"),
    "standardised inputs (STANDARDISE)": ("memfuse-no-standardise", "paper+standardise"),
}


def parts_table(rows: dict[str, dict[str, dict]]) -> str:
    """Markdown: each part of memfuse removed from it, and added alone to the paper, as
    micro AUC mean (worst) over the seeds run, and the mean difference from memfuse (or
    paper) paired seed by seed where both finished; failed runs (e.g. a collapsed
    autoencoder) are counted."""

    def cell(name: str, ref: str | None = None) -> str:
        by_seed = rows.get(name, {})
        ok = {k: r["micro_auc"] * 100 for k, r in by_seed.items() if not r.get("failed")}
        failed = sorted((k for k, r in by_seed.items() if r.get("failed")), key=int)
        if not ok:
            text = "not run"
        else:
            seeds = ",".join(sorted(ok, key=int))
            text = f"{np.mean(list(ok.values())):.1f} ({min(ok.values()):.1f}), seeds {seeds}"
            ref_rows = rows.get(ref, {}) if ref else {}
            base = {k: ref_rows[k]["micro_auc"] * 100 for k in ok if k in ref_rows and not ref_rows[k].get("failed")}
            if base:  # paired on the seeds where both finished, named when that is not all of this row's
                diff = float(np.mean([ok[k] - base[k] for k in base]))
                text += f"; {diff if abs(diff) >= 0.05 else 0.0:+.1f} against {ref}"
                if len(base) < len(ok):
                    text += f" on seeds {','.join(sorted(base, key=int))}"
        if failed:
            text += f"; failed at seed {','.join(failed)}"
        return text

    lines = [
        "| part | memfuse without it | paper with it alone |",
        "|---|---|---|",
        f"| (none: memfuse / paper as they are) | {cell('memfuse')} | {cell('paper')} |",
    ]
    lines += [
        f"| {part} | {cell(without, 'memfuse')} | {cell(alone, 'paper')} |" for part, (without, alone) in PARTS.items()
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--data-root", default=None)
    p.add_argument("--config", default="", help="config files given to every run (e.g. config/schedules/paper.toml)")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--only", default="", help=f"comma-separated variants (default: all): {', '.join(VARIANTS)}")
    p.add_argument(
        "--checkpoint-root", default=str(ROOT / "checkpoints" / "ablations"), help="checkpoints go to DIR/seedS/"
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="run nothing: print the tables of what results/<dataset>_ablations.json holds",
    )
    args = p.parse_args()
    names = [n for n in args.only.split(",") if n] or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    out = ROOT / "results" / f"{args.dataset}_ablations.json"
    rows: dict = json.loads(out.read_text()) if out.exists() else {}
    if args.report:
        print(
            parts_table(rows)
            + "\n\n"
            + table({n: rows[n] for n in VARIANTS if n in rows and n in names})
            + "\n\n"
            + runs_table({n: rows[n] for n in names if n in rows}, args.dataset)
        )
        return
    for seed in seeds:
        for name in names:
            row = run_variant(args, name, seed)
            # re-read before writing: sweeps over other seeds may run beside this one
            rows = json.loads(out.read_text()) if out.exists() else {}
            rows.setdefault(name, {})[str(seed)] = row
            save_json(out, rows)  # after every run: a long sweep keeps what it measured
    print("\n" + parts_table(rows) + "\n\n" + table({n: rows[n] for n in VARIANTS if n in rows}))
    print(f"\n-> {out}")


if __name__ == "__main__":
    main()

"""Fidelity switches and extensions, one run_all.py run each, in one table.

    python bench/ablations.py                         # synthetic data, quick preset
    python bench/ablations.py --dataset ped2 --data-root ../shared/data --preset quick --only default,extended

Every variant shares the dataset's checkpoints (run_all reruns only the stages whose flags
changed) and writes its results to results/<dataset>_<variant>/. The table (markdown) is
printed and written with the raw figures to results/<dataset>_ablations.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memfuse.io import save_json  # noqa: E402

# name -> (run_all flags, what it shows); ordered so that consecutive runs share stages
VARIANTS = {
    "default": ([], "the method as specified, correct behaviour"),
    "no_masking": (["--no-masking"], "reference: padded keys attended"),
    "u2_k3": (["--u2-key", "k3"], "reference: u2 with q1 k3^T"),
    "smooth_whole": (["--smooth-whole-sequence"], "reference: smoothing across video borders"),
    "velocity_x3": (["--velocity-anomaly-scale", "3"], "extension: pseudo-anomalous velocity x3"),
    "stale_step": (["--stale-step"], "reference: stale optimizer step per memory epoch"),
    "reference": (["--reference"], "all four reference behaviours"),
    "extrapolate": (["--pseudo-extrapolate", "1"], "extension: pseudo-anomaly pushed away from memory"),
    "extended": (["--extended"], "both extensions"),
    "app_only": (["--modalities", "app"], "ablation: appearance alone (pose and velocity fed as zeros)"),
    "pose_only": (["--modalities", "pose"], "ablation: pose alone"),
    "vel_only_x3": (["--modalities", "vel", "--velocity-anomaly-scale", "3"], "ablation: velocity alone (needs the velocity extension)"),
    "val_default": (["--val-videos", "2", "--stop-on-validation"], "label-free stopping: 2 train videos held out, lowest pseudo-label loss"),
    "val_velocity_x3": (["--velocity-anomaly-scale", "3", "--val-videos", "2", "--stop-on-validation"],
                        "label-free stopping with the velocity extension"),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--data-root", default=None)
    p.add_argument("--preset", default="quick")
    p.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    args = p.parse_args()
    names = [n for n in args.only.split(",") if n] or list(VARIANTS)
    rows = {}
    for name in names:
        flags, what = VARIANTS[name]
        cmd = [sys.executable, str(ROOT / "run_all.py"), "--dataset", args.dataset, "--preset", args.preset,
               "--results-name", f"{args.dataset}_{name}", *flags]
        if args.data_root:
            cmd += ["--data-root", args.data_root]
        print(f"\n##### {name}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT)
        if proc.returncode:
            sys.exit(f"variant {name} failed")
        m = json.loads((ROOT / "results" / f"{args.dataset}_{name}" / "metrics.json").read_text())
        rows[name] = {"flags": " ".join(flags) or "(none)", "what": what, "micro_auc": m["micro_auc"], "macro_auc": m["macro_auc"],
                      "eer": m["eer"], "oracle_micro_auc": m.get("oracle_micro_auc"), "oracle_epoch": m.get("oracle_epoch"),
                      "baseline_micro_auc": m.get("baseline", {}).get("micro_auc"),
                      "per_kind_micro_auc": m.get("per_kind_micro_auc"), "validation": m.get("validation"),
                      "wall_seconds": round(time.perf_counter() - start, 1),
                      "stage_seconds": m["stage_seconds"]}
    out = ROOT / "results" / f"{args.dataset}_ablations.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    rows = {**previous, **rows}  # a run of some variants (--only) updates their rows and keeps the others
    save_json(out, rows)
    kinds = sorted(set.intersection(*(set(r.get("per_kind_micro_auc") or {}) for r in rows.values())))
    print("\n| variant | flags | micro AUC | macro AUC | EER | " + "".join(f"{k} only | " for k in kinds)
          + "oracle micro AUC (test-selected) | wall s |\n|---|---|---|---|---|" + "---|" * len(kinds) + "---|---|")
    for name, r in rows.items():
        oracle = f"{r['oracle_micro_auc']:.3f} (epoch {r['oracle_epoch']})" if r["oracle_micro_auc"] is not None else "-"
        per_kind = "".join(f"{r['per_kind_micro_auc'][k]:.3f} | " for k in kinds)
        print(f"| {name} | `{r['flags']}` | {r['micro_auc']:.3f} | {r['macro_auc']:.3f} | {r['eer']:.3f} | {per_kind}{oracle} | {r['wall_seconds']} |")


if __name__ == "__main__":
    main()

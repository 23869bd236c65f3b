"""detect.py against run_all.py on a dataset's test videos: AUCs, false alarms, delays, speed.

    python detect.py checkpoints/ped2/memfuse/detector ../shared/data/ped2/testing/frames --out results/detect_ped2 \\
        --boxes ../shared/data/ped2/ped2_bboxes_test.npy --poses ../shared/data/ped2/extracted_features/test/pose.npy
    python bench/detect_eval.py --dataset ped2 --detect-dir results/detect_ped2

Reads detect.py's DIR/<video>.csv (one per test video, in the split's order) and
summary.json, the test labels, and run_all.py's results/DATASET/RECIPE/metrics.json. Prints
and writes DIR/evaluation.json:

- micro AUC of the causal score (what detect.py alarms on), and of ``raw_score`` smoothed
  offline as run_all.py smooths (symmetric Gaussian per video), against run_all.py's figure;
- false alarms per hour: alarm events (detect.py's ``alarm`` runs, merged as it merges them)
  that touch no anomalous frame, per hour of normal test frames at the dataset's FPS;
- per anomalous event (a run of anomalous frames), the delay from its first frame to the
  first alarm inside it, in frames and seconds, or a miss;
- frames/s and milliseconds per frame per step, from detect.py's summary.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memfuse import config  # noqa: E402
from memfuse import data as D  # noqa: E402
from memfuse.alarms import alarm_events  # noqa: E402
from memfuse.metrics import micro_auc, smooth_scores, video_slices  # noqa: E402


def read_csv(path: Path) -> dict[str, np.ndarray]:
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    return {k: np.array([float(r[k]) for r in rows]) for k in ("frame", "score", "alarm", "raw_score")}


def evaluate(
    causal: np.ndarray,
    raw: np.ndarray,
    alarm: np.ndarray,
    labels: np.ndarray,
    ends: np.ndarray,
    *,
    fps: float,
    sigma: float,
    merge_gap: int,
) -> dict:
    """The figures of the module doc from the concatenated per-frame columns (F,)."""
    offline = smooth_scores(raw, ends, sigma)
    false_alarms, delays = 0, []
    for s in video_slices(ends):
        lab, on = labels[s].astype(bool), alarm[s].astype(bool)
        for e in alarm_events(on.astype(float), 0.5, merge_gap):
            if not lab[e.start : e.end + 1].any():
                false_alarms += 1
        for e in alarm_events(lab.astype(float), 0.5, 0):
            hit = np.flatnonzero(on[e.start : e.end + 1])
            delays.append(None if not len(hit) else int(hit[0]))
    normal_hours = float((labels == 0).sum()) / fps / 3600
    found = [d for d in delays if d is not None]
    return {
        "causal_micro_auc": micro_auc(causal, labels),
        "offline_micro_auc": micro_auc(offline, labels),
        "false_alarm_events": false_alarms,
        "normal_hours": round(normal_hours, 4),
        "false_alarms_per_hour": round(false_alarms / normal_hours, 2) if normal_hours else None,
        "anomalous_events": len(delays),
        "detected_events": len(found),
        "delay_frames": delays,
        "median_delay_s": round(float(np.median(found)) / fps, 2) if found else None,
        "alarm_frames_on_normal": int(((alarm > 0) & (labels == 0)).sum()),
        "alarm_frames_on_anomalous": int(((alarm > 0) & (labels == 1)).sum()),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ped2")
    p.add_argument("--data-root", default=str(ROOT / "data"), help="the folder holding DATASET's features and labels")
    p.add_argument("--detect-dir", required=True, help="detect.py's --out folder")
    p.add_argument("--results", default=None, help="run_all.py's results/DATASET/RECIPE (default: memfuse's)")
    a = p.parse_args(argv)
    root, out = D.resolve_data_root(a.dataset, a.data_root), Path(a.detect_dir)
    summary = json.loads((out / "summary.json").read_text())
    cols = [read_csv(Path(s["csv"])) for s in summary["sources"]]
    n = sum(len(c["frame"]) for c in cols)
    ends = D.load_clip_lengths(root, a.dataset, "test", n)
    if not np.array_equal(np.cumsum([len(c["frame"]) for c in cols]), ends):
        raise SystemExit(f"{out}: the CSVs' frame counts disagree with the {a.dataset} test videos")
    labels = D.load_labels(root, a.dataset, ends)
    cat = {k: np.concatenate([c[k] for c in cols]) for k in ("score", "alarm", "raw_score")}
    settings = config.dataset_settings(a.dataset) or {}
    fps = float(settings.get("FPS", 25.0))
    det = json.loads((Path(summary["model"]) / "detector.json").read_text())
    result = evaluate(
        cat["score"],
        cat["raw_score"],
        cat["alarm"],
        labels,
        ends,
        fps=fps,
        sigma=float(det["scoring"]["smooth_sigma"]),
        merge_gap=int(det["threshold"]["merge_gap_frames"]),
    )
    batch = Path(a.results or ROOT / "results" / a.dataset / det["recipe"]) / "metrics.json"
    if batch.exists():
        result["run_all_micro_auc"] = json.loads(batch.read_text())["micro_auc"]
    frames = sum(s["frames"] for s in summary["sources"])
    seconds = sum(s["seconds"] for s in summary["sources"])
    steps: dict[str, float] = {}
    for s in summary["sources"]:
        for k, v in s["ms_per_frame"].items():
            steps[k] = steps.get(k, 0.0) + v * s["frames"] / frames
    result.update(
        frames=frames,
        frames_per_s=round(frames / seconds, 2),
        ms_per_frame={k: round(v, 2) for k, v in steps.items()},
        dropped=sum(s["dropped"] for s in summary["sources"]),
        threshold=summary["threshold"],
        fps=fps,
    )
    (out / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n")
    for k, v in result.items():
        print(f"{k}: {v}")
    return result


if __name__ == "__main__":
    main()

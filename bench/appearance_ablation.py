"""Appearance backbones as an ablation: AI-VAD's appearance-only kNN score on a dataset.

For each option: 512-d features of every train and test object (same boxes and whole-frame
entries as stage 0), test object score = squared L2 distance to the nearest train object
(AI-VAD: faiss IndexFlatL2, k = 1), frame score = max over its objects, Gaussian smoothing
per video (sigma 3), micro / macro AUC (memfuse.metrics). This is a *reported ablation*
only: the stage-0 default (``hog``) was fixed before this was run and is not chosen by it.

Options: ``hog`` (default: 504 HOG + 8 geometry), ``hog_only`` (its HOG part),
``geometry_only`` (its 8 geometry values), ``pixels``, and ``clip`` when ``--clip-weights``
is given.

    python bench/appearance_ablation.py --data-root /work/shared/data [--clip-weights PATH]

Prints a table and writes ``results/appearance_ablation.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from memfuse.extract.appearance import HogGeometry, Pixels, make_backbone  # noqa: E402
from memfuse.extract.frames import check_boxes, list_videos, load_boxes, read_frame, split_boxes_by_video  # noqa: E402
from memfuse.io import RESULTS_ROOT, save_json  # noqa: E402
from memfuse.metrics import macro_auc, micro_auc, smooth_scores  # noqa: E402

SIGMA = 3  # AI-VAD's smoothing on Ped2 and Avenue
_G: dict = {}


def _video(job):
    name, paths, boxes = job
    cv2.setNumThreads(1)
    out = {"hog": [], "pixels": []}
    t = {"hog": 0.0, "pixels": 0.0}
    for p, b in zip(paths, boxes):
        rgb = read_frame(p, name)
        bx, _ = check_boxes(b, rgb.shape[1], rgb.shape[0])
        whole = np.full(len(bx), np.asarray(b).size == 0)
        for k, bb in (("hog", _G["hog"]), ("pixels", _G["pixels"])):
            t0 = time.perf_counter()
            out[k].append(bb(rgb, bx, whole))
            t[k] += time.perf_counter() - t0
    return out, t


def _init():
    _G["hog"], _G["pixels"] = HogGeometry(), Pixels()


def features(base: Path, dataset: str, split: str, workers: int, clip=None):
    folder = {"train": "training", "test": "testing"}[split]
    vids = list_videos(base / folder / "frames")
    boxes = split_boxes_by_video(load_boxes(base / f"{dataset}_bboxes_{split}.npy"), vids, base)
    jobs = [(v.name, [str(f) for f in v.frames], list(b)) for v, b in zip(vids, boxes)]
    feats = {"hog": [], "pixels": []}
    times = {"hog": 0.0, "pixels": 0.0}
    with get_context("fork").Pool(workers, initializer=_init) as pool:
        for out, t in pool.imap(_video, jobs):
            for k in feats:
                feats[k] += out[k]
                times[k] += t[k]
    if clip is not None:
        feats["clip"], times["clip"] = [], 0.0
        for name, paths, bxs in jobs:
            for p, b in zip(paths, bxs):
                rgb = read_frame(p, name)
                bx, _ = check_boxes(b, rgb.shape[1], rgb.shape[0])
                t0 = time.perf_counter()
                feats["clip"].append(clip(rgb, bx))
                times["clip"] += time.perf_counter() - t0
    counts = np.array([len(f) for f in feats["hog"]])
    stacked = {k: np.concatenate(v).astype(np.float32) for k, v in feats.items()}
    stacked["hog_only"] = stacked["hog"][:, :504]
    stacked["geometry_only"] = stacked["hog"][:, 504:]
    return stacked, counts, times


def nn_sqdist(test: np.ndarray, train: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(N,) squared L2 distance of each test row to its nearest train row (exact)."""
    tr = torch.from_numpy(train).double()
    tr_sq = (tr * tr).sum(1)
    out = []
    for i in range(0, len(test), chunk):
        q = torch.from_numpy(test[i : i + chunk]).double()
        d = (q * q).sum(1, keepdim=True) + tr_sq[None] - 2 * q @ tr.T
        out.append(d.min(1).values.clamp_min(0))
    return torch.cat(out).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--dataset", default="ped2")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clip-weights", default=None)
    ap.add_argument("--out", default=str(RESULTS_ROOT / "appearance_ablation.json"))
    args = ap.parse_args()
    from memfuse.data import load_clip_lengths, load_labels

    base = Path(args.data_root) / args.dataset
    clip = make_backbone("clip", args.clip_weights) if args.clip_weights else None
    tr, tr_counts, tr_times = features(base, args.dataset, "train", args.workers, clip)
    te, te_counts, te_times = features(base, args.dataset, "test", args.workers, clip)
    ends = load_clip_lengths(args.data_root, args.dataset, "test", len(te_counts))
    labels = load_labels(args.data_root, args.dataset, ends)
    offsets = np.concatenate([[0], np.cumsum(te_counts)])
    rows = []
    for k in ("hog", "hog_only", "geometry_only", "pixels", "clip"):
        if k not in tr:
            rows.append({"option": k, "status": "not run: no --clip-weights (AI-VAD's CLIP ViT-B/16 needs a download)"})
            continue
        t0 = time.perf_counter()
        d = nn_sqdist(te[k], tr[k])
        frame = np.maximum.reduceat(d, offsets[:-1])
        s = smooth_scores(frame, ends, SIGMA)
        row = {
            "option": k,
            "dim": int(tr[k].shape[1]),
            "micro_auc": micro_auc(s, labels),
            "macro_auc": macro_auc(s, labels, ends),
            "micro_auc_unsmoothed": micro_auc(frame, labels),
            "knn_s": time.perf_counter() - t0,
            "extract_s_train": tr_times.get(k.split("_")[0] if k != "geometry_only" else "hog"),
            "extract_s_test": te_times.get(k.split("_")[0] if k != "geometry_only" else "hog"),
        }
        rows.append(row)
    print(f"\n{'option':<15} {'dim':>4} {'micro':>7} {'macro':>7} {'micro(raw)':>10}  extract s (train/test, CPU)")
    for r in rows:
        if "status" in r:
            print(f"{r['option']:<15} {r['status']}")
            continue
        print(
            f"{r['option']:<15} {r['dim']:>4} {100 * r['micro_auc']:>7.2f} {100 * r['macro_auc']:>7.2f} "
            f"{100 * r['micro_auc_unsmoothed']:>10.2f}"
            f"  {r['extract_s_train']:.1f} / {r['extract_s_test']:.1f}"
        )
    save_json(
        args.out,
        {
            "dataset": args.dataset,
            "score": "appearance-only 1-NN squared L2, frame max, gaussian sigma 3 per video",
            "note": "reported ablation only; the default was fixed beforehand",
            "rows": rows,
            "train_objects": int(tr_counts.sum()),
            "test_objects": int(te_counts.sum()),
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

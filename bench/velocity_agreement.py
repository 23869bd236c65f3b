"""Agreement of classic OpenCV flow velocity with AI-VAD's FlowNet2 velocity on Ped2 train.

For each flow setting: velocity of every train object (same boxes, whole-frame entry for
box-less frames, B = 1) and its Spearman rank correlation with
``reference/train_velocity_flownet2.npy``: per object (all objects pooled) and per frame
(max over the frame's objects, the quantity a frame score is built from). Slow settings run
on a subsample of videos (every 4th); the best ones are rerun on all of train. The default
of ``extract_features.py`` is picked here by agreement, never by a test score.

    python bench/velocity_agreement.py --data-root /work/shared/data [--full SETTING ...]

Prints a table and writes ``results/velocity_agreement.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from memfuse.extract.frames import check_boxes, list_videos, load_boxes, read_frame, split_boxes_by_video  # noqa: E402
from memfuse.extract.velocity import FlowConfig, box_velocity, box_velocity_resized, frame_flow  # noqa: E402
from memfuse.io import RESULTS_ROOT, save_json  # noqa: E402

SUBSAMPLE_EVERY = 4  # subsample: videos 0, 4, 8, 12 (~640 frames)
# (config, run on full train?)  full=True for the fast ones. Each flow is on the boxes' frame
# (FlowConfig.frame "current", the default) unless it says "on previous" (AI-VAD's), over one
# frame unless it says "span2" (from the frame two before, halved: stage 0's default).
SETTINGS = [
    (FlowConfig("dis_fine", 1, span=2), False),
    (FlowConfig("dis_balanced", 1, span=2), False),
    (FlowConfig("dis_balanced", 1, span=3), False),
    (FlowConfig("dis_fine", 1, frame="previous"), False),
    (FlowConfig("dis_balanced", 1), False),
    (FlowConfig("dis_balanced", 1, frame="previous"), False),
    (FlowConfig("dis_ultrafast", 1), True),
    (FlowConfig("dis_fast", 1), True),
    (FlowConfig("dis_medium", 1), True),
    (FlowConfig("farneback", 1), True),
    (FlowConfig("dis_fine", 1), False),
    (FlowConfig("dis_ultrafast", 2), True),
    (FlowConfig("dis_fast", 2), True),
    (FlowConfig("dis_medium", 2), True),
    (FlowConfig("dis_medium", 3), False),
    (FlowConfig("dis_fast", 3), False),
    (FlowConfig("farneback", 2), False),
    (FlowConfig("dis_fine", 2), False),
    (FlowConfig("dis_medium", 1, 1.0), False),
    (FlowConfig("dis_medium", 2, 0.7), False),
    (FlowConfig("dis_medium", 2, 1.0), False),
    (FlowConfig("dis_fast", 2, 1.0), False),
    (FlowConfig("dis_medium", 3, 1.0), False),
]
# FlowNet2 ran at 1024x768 and its flow was resized back to 360x240 without rescaling the
# values, so AI-VAD's x and y components are in different units: dx * 1024/360, dy * 768/240.
FLOWNET_UNITS = (1024 / 360, 768 / 240)

_G: dict = {}


def _init(frames_by_video, boxes_by_video):
    cv2.setNumThreads(1)
    _G["frames"], _G["boxes"] = frames_by_video, boxes_by_video


def _video_job(args):
    v, cfg, extra = args
    frames, boxes = _G["frames"][v], _G["boxes"][v]
    out = {"plain": [], "flownet_units": [], "resized224": []}
    t0 = time.perf_counter()
    for t in range(len(frames)):
        apart = min(t, cfg.span)  # as stage 0: from the frame span before, or the video's first
        if t:
            flow = frame_flow(frames[t - apart], frames[t], cfg, apart)
        else:  # a video's first frame: still, as stage 0 has it
            flow = np.zeros(frames[t].shape + (2,), np.float32)
        out["plain"].append(box_velocity(flow, boxes[t], 1))
        if extra:
            fu = flow * np.asarray(FLOWNET_UNITS, np.float32)
            out["flownet_units"].append(box_velocity(fu, boxes[t], 1))
            out["resized224"].append(box_velocity_resized(fu, boxes[t], 1))
    return v, out, time.perf_counter() - t0


def agreement(ours: list[np.ndarray], ref: list[np.ndarray]) -> dict:
    o = np.concatenate([x.ravel() for x in ours])
    r = np.concatenate([np.asarray(x, np.float64).ravel() for x in ref])
    of = np.array([x.max() for x in ours])
    rf = np.array([np.max(x) for x in ref])
    return {
        "per_object_spearman": float(spearmanr(o, r)[0]),
        "per_frame_max_spearman": float(spearmanr(of, rf)[0]),
        "pearson_log": float(np.corrcoef(np.log(o + 1e-3), np.log(r + 1e-3))[0, 1]),
        "scale_median_ref_over_ours": float(np.median(r[o > 0.05] / o[o > 0.05])) if (o > 0.05).any() else None,
        "n_objects": int(len(o)),
        "n_frames": int(len(of)),
    }


def run(cfg: FlowConfig, videos: list[int], pool, extra: bool = False) -> tuple[dict, dict]:
    t0 = time.perf_counter()
    res = {}
    cpu = 0.0
    for v, out, dt in pool.imap_unordered(_video_job, [(v, cfg, extra) for v in videos]):
        res[v] = out
        cpu += dt
    wall = time.perf_counter() - t0
    return res, {"wall_s": wall, "cpu_s": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--dataset", default="ped2")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None, help="labels of settings to run (default all)")
    ap.add_argument("--full", nargs="*", default=[], help="labels of extra settings to run on all of train")
    ap.add_argument("--out", default=str(RESULTS_ROOT / "velocity_agreement.json"))
    ap.add_argument(
        "--check",
        default=None,
        metavar="VELOCITY_NPY",
        help="only score an existing train velocity.npy (e.g. stage 0's output with the default flow) "
        "against the reference on all of train; adds it to the JSON as 'stage0_default'",
    )
    ap.add_argument("--check-label", default="stage 0 default")
    args = ap.parse_args()
    if args.check:
        import json

        base = Path(args.data_root) / args.dataset
        ref = np.load(base / "reference" / "train_velocity_flownet2.npy", allow_pickle=True)
        ours = [np.asarray(x, np.float64) for x in np.load(args.check, allow_pickle=True)]
        if len(ours) != len(ref) or any(len(a) != len(b) for a, b in zip(ours, ref)):
            raise SystemExit(f"{args.check}: frame/object layout differs from the reference")
        ours = [x.sum(1, keepdims=True) for x in ours]  # B bins -> mean magnitude (B = 1 on Ped2)
        res = {"setting": args.check_label, "file": args.check, **agreement(ours, list(ref))}
        print(
            f"{args.check_label}: all of train: obj {res['per_object_spearman']:.3f} "
            f"frame {res['per_frame_max_spearman']:.3f}"
        )
        doc = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
        doc["stage0_default"] = res
        save_json(args.out, doc)
        return

    base = Path(args.data_root) / args.dataset
    ref = np.load(base / "reference" / "train_velocity_flownet2.npy", allow_pickle=True)
    vids = list_videos(base / "training" / "frames")
    boxes = split_boxes_by_video(load_boxes(base / f"{args.dataset}_bboxes_train.npy"), vids, base)
    starts = np.cumsum([0] + [len(v.frames) for v in vids])
    print("reading frames ...", flush=True)
    frames_by_video, boxes_by_video = [], []
    for v, bx in zip(vids, boxes):
        fr = [read_frame(f, v.name, color=False) for f in v.frames]
        h, w = fr[0].shape
        frames_by_video.append(fr)
        boxes_by_video.append([check_boxes(b, w, h)[0] for b in bx])
    all_v = list(range(len(vids)))
    sub_v = all_v[::SUBSAMPLE_EVERY]

    def ref_for(vs):
        return [ref[i] for v in vs for i in range(starts[v], starts[v + 1])]

    rows = []
    with Pool(args.workers, initializer=_init, initargs=(frames_by_video, boxes_by_video)) as pool:
        settings = [(c, f or c.label() in args.full) for c, f in SETTINGS]
        if args.only:
            settings = [(c, f) for c, f in settings if c.label() in args.only]
        for cfg, full in settings:
            vs = all_v if full else sub_v
            res, tm = run(cfg, vs, pool)
            ours = [x for v in vs for x in res[v]["plain"]]
            row = {
                "setting": cfg.label(),
                "method": cfg.method,
                "scale": cfg.scale,
                "blur": cfg.blur,
                "frame": cfg.frame,
                "span": cfg.span,
                "videos": "all" if full else f"every {SUBSAMPLE_EVERY}th",
                **agreement(ours, ref_for(vs)),
                **tm,
                "ms_per_frame_cpu": 1000 * tm["cpu_s"] / len(ours),
                # wall time of a whole train split (2550 frames) at this rate, 2 workers
                "est_train_split_wall_s": tm["wall_s"] * len(ref) / len(ours),
            }
            if full:
                sub_rows = [x for v in sub_v for x in res[v]["plain"]]
                row["subsample"] = agreement(sub_rows, ref_for(sub_v))
            rows.append(row)
            save_json(args.out, {"dataset": args.dataset, "partial": True, "rows": rows})  # survive an interrupt
            print(
                f"{row['setting']:<26} {row['videos']:<11} obj {row['per_object_spearman']:.3f}  "
                f"frame {row['per_frame_max_spearman']:.3f}"
                f"  {row['ms_per_frame_cpu']:.1f} ms/frame  train-split ~{row['est_train_split_wall_s']:.0f}s",
                flush=True,
            )
        # Extra checks of the velocity definition, on the subsample: FlowNet2's anisotropic
        # units, and AI-VAD's literal crop -> 224x224 -> mean vs our exact box mean.
        best = max((r for r in rows if r["videos"] == "all"), key=lambda r: r["per_object_spearman"])
        cfg = FlowConfig.from_settings(best)
        res, _ = run(cfg, sub_v, pool, extra=True)
        checks = {}
        for k in ("plain", "flownet_units", "resized224"):
            checks[k] = agreement([x for v in sub_v for x in res[v][k]], ref_for(sub_v))
        p = np.concatenate([x.ravel() for v in sub_v for x in res[v]["flownet_units"]])
        q = np.concatenate([x.ravel() for v in sub_v for x in res[v]["resized224"]])
        checks["box_mean_vs_resized224_max_rel_diff"] = float(np.max(np.abs(p - q) / np.maximum(q, 1e-3)))
        checks["box_mean_vs_resized224_spearman"] = float(spearmanr(p, q)[0])
        checks["setting"] = cfg.label()
    print(f"\ndefinition checks on {cfg.label()} (every {SUBSAMPLE_EVERY}th video):")
    for k in ("plain", "flownet_units", "resized224"):
        print(f"  {k:<14} obj {checks[k]['per_object_spearman']:.3f} frame {checks[k]['per_frame_max_spearman']:.3f}")
    print(f"  box mean vs 224-resized mean: max rel diff {checks['box_mean_vs_resized224_max_rel_diff']:.3f}")

    print(f"\n{'setting':<26} {'videos':<11} {'obj rho':>8} {'frame rho':>9} {'ms/frame':>9} {'train s':>8}")
    for r in rows:
        print(
            f"{r['setting']:<26} {r['videos']:<11} {r['per_object_spearman']:>8.3f} {r['per_frame_max_spearman']:>9.3f}"
            f" {r['ms_per_frame_cpu']:>9.1f} {r['est_train_split_wall_s']:>8.0f}"
        )
    save_json(
        args.out,
        {
            "dataset": args.dataset,
            "reference": "reference/train_velocity_flownet2.npy",
            "subsample_videos": sub_v,
            "rows": rows,
            "definition_checks": checks,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

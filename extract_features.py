"""Stage 0: AI-VAD-format per-object features from raw frames or videos and object boxes.

Reads  DATA_ROOT/DATASET/{training,testing}/frames/NN/*.jpg   one folder per video (or videos/*.avi, *.mp4, ...)
       DATA_ROOT/DATASET/DATASET_bboxes_{train,test}.npy      optional: (n_i, 4) x1, y1, x2, y2 per frame
       DATA_ROOT/DATASET/extracted_features/{train,test}/pose.npy     optional: else made with --pose-model
Writes OUT_ROOT/DATASET/extracted_features/{train,test}/velocity.npy       (n_i, VELOCITY_BINS) float32 per frame
       OUT_ROOT/DATASET/extracted_features/{train,test}/deep_features.npy  (n_i, 512) float32 per frame
       OUT_ROOT/DATASET/extracted_features/{train,test}/pose.npy           (p_i, 34) float32 per frame
       OUT_ROOT/DATASET/extracted_features/{train,test}/extract_meta.json  settings, counts, wall time
       OUT_ROOT/DATASET/{train,test}_clip_lengths.npy and the label files   copied (clip lengths computed if absent)
       OUT_ROOT/DATASET/DATASET_bboxes_{train,test}.npy   a split without boxes: those of what moves
n_i: the objects of frame i, box i of the boxes file (a frame without boxes: one whole-frame
entry); p_i: its persons. The work is memfuse/extract/pipeline.py. The synthetic dataset
already comes as features: stage 0 has nothing to do for it.

    python extract_features.py --dataset ped2 --data-root ../shared/data
    python extract_features.py --dataset NAME --data-root DIR --pose-model data/models/pose_landmark_full.tflite \
        --fast-extract
    python extract_features.py --dataset NAME --data-root DIR --pose-model ... --realtime-extract   # for detect.py live
    python extract_features.py --dataset NAME --data-root /shared/DIR --ray auto   # one task per video on a Ray cluster
"""

from memfuse.extract.pipeline import (
    APPEARANCE_CHOICES,
    FAST_FLOW,
    FAST_POSE_EVERY,
    FLOW_CHOICES,
    FLOW_FRAME_CHOICES,
    REALTIME_FLOW,
    REALTIME_FLOW_SCALE,
    ExtractSettings,
    extract_dataset,
)
from memfuse.io import InputError
from memfuse.pipeline import SYNTHETIC, begin, run

# -- settings: each is also a flag (--flow dis_medium); DATASET, DATA_ROOT, ... are common (memfuse/config.py).
# The values are memfuse.extract.pipeline.ExtractSettings' defaults (tests/test_extract.py checks it).
OUT_ROOT = "data"
APPEARANCE = "hog"
FLOW = "dis_fine"  # closest to AI-VAD's FlowNet2 velocity on Ped2 train (bench/velocity_agreement.py)
FLOW_SCALE = 1.0
FLOW_BLUR = 0.0
FLOW_FRAME = "current"  # the flow on the pixels of the frame whose boxes it is read in (AI-VAD's: previous)
FLOW_SPAN = 2  # velocity over the last 2 frames: half the flow's error per frame (AI-VAD's: 1)
VELOCITY_BINS = 8  # AI-VAD's; config/datasets/NAME.toml sets a dataset's own (1 on Ped2)
POSE_MODEL = ""
POSE_EVERY = 1
PERSON_SHAPED = False
FAST_EXTRACT = False
REALTIME_EXTRACT = False
MOTION_BACKGROUND = "video"
WORKERS = 2
RAY = ""  # run one task per video on a Ray cluster: local | auto | HOST:PORT (memfuse/distributed.py)
RAY_GPUS_PER_TASK = 0.0
CLIP_WEIGHTS = ""
CLIP_INTERPOLATION = "bilinear"  # AI-VAD resizes crops with cv2.resize's default, bilinear
CLIP_QUICK_GELU = True
CLIP_BGR = False
SPLITS = "train,test"
FORCE = False
PROGRESS = True
HELP = {
    "OUT_ROOT": "write OUT_ROOT/DATASET/: the features and a copy of the dataset's other files",
    "APPEARANCE": f"appearance backbone: {' | '.join(APPEARANCE_CHOICES)} (hog: HOG + box geometry, offline; "
    "clip: AI-VAD's CLIP ViT-B/16, needs --clip-weights)",
    "FLOW": f"optical flow: {' | '.join(FLOW_CHOICES)}",
    "FLOW_SCALE": "upsample frames by this factor before the flow",
    "FLOW_BLUR": "Gaussian sigma (native px) on frames before the flow, 0 = none",
    "FLOW_FRAME": f"{' | '.join(FLOW_FRAME_CHOICES)}: a frame's flow on its own pixels, where its boxes are "
    "(the flow back to the frame before, reversed), or on the frame before's (AI-VAD's)",
    "FLOW_SPAN": "frames the flow reaches back over: a frame's velocity is its flow from the frame this many "
    "before, divided by it (AI-VAD's: 1)",
    "VELOCITY_BINS": "velocity orientation bins (config/datasets/DATASET.toml sets a dataset's own: 1 on Ped2)",
    "POSE_MODEL": "BlazePose pose_landmark_full.tflite: makes pose.npy for a split without one "
    "(memfuse/extract/pose.py says how to get it); empty: none",
    "POSE_EVERY": "with --pose-model: pose every K-th frame of a video; the frames between reuse its poses",
    "PERSON_SHAPED": "with --pose-model: pose only boxes tall enough to hold a person and taller than wide "
    "(memfuse/extract/pose.py: PERSON_MIN_HEIGHT)",
    "FAST_EXTRACT": f"speed profile for your own videos: --flow {FAST_FLOW} --pose-every {FAST_POSE_EVERY} "
    "--person-shaped; a --flow or --pose-every other than its default wins",
    "REALTIME_EXTRACT": f"real-time profile for detect.py on a live camera: --fast-extract's poses, --flow "
    f"{REALTIME_FLOW} --flow-scale {REALTIME_FLOW_SCALE} (a flow or scale set otherwise wins)",
    "MOTION_BACKGROUND": "test boxes without a boxes file: against each video's median background (video) or the "
    "camera's, learnt on the train split and kept current as detect.py keeps it (camera: no look-ahead)",
    "WORKERS": "processes, one video each (CLIP runs in the main process); with --ray local, the CPUs of Ray",
    "RAY": "one Ray task per video on a cluster: local (Ray on this machine), auto (the cluster `ray start` "
    "runs here) or HOST:PORT; data and project at the same path on every node (pip install -r requirements-ray.txt)",
    "RAY_GPUS_PER_TASK": "with --ray: GPUs each video's task asks for (CLIP runs on it); 0: CPUs only",
    "CLIP_WEIGHTS": "CLIP ViT-B/16 weights file (OpenAI .pt, state dict or open_clip); nothing is downloaded",
    "CLIP_INTERPOLATION": "CLIP crop resize to 224x224: bilinear (AI-VAD) | bicubic | area",
    "CLIP_QUICK_GELU": "CLIP MLP activation: QuickGELU (OpenAI weights); --no-clip-quick-gelu: exact GELU "
    "(open_clip LAION weights)",
    "CLIP_BGR": "feed CLIP BGR channels as AI-VAD's cv2.imread frames (matters on colour data only)",
    "SPLITS": "splits to extract, comma-separated",
    "FORCE": "redo splits whose outputs exist",
    "PROGRESS": "progress bars",
}


def settings_of(g: dict) -> ExtractSettings:
    """The :class:`ExtractSettings` of the script globals ``g`` (an empty path: none)."""
    settings = ExtractSettings(
        appearance=g["APPEARANCE"],
        flow=g["FLOW"],
        flow_scale=g["FLOW_SCALE"],
        flow_blur=g["FLOW_BLUR"],
        flow_frame=g["FLOW_FRAME"],
        flow_span=g["FLOW_SPAN"],
        bins=g["VELOCITY_BINS"] or None,
        pose_model=g["POSE_MODEL"] or None,
        pose_every=g["POSE_EVERY"],
        person_shaped=g["PERSON_SHAPED"],
        clip_weights=g["CLIP_WEIGHTS"] or None,
        clip_interpolation=g["CLIP_INTERPOLATION"],
        clip_quick_gelu=g["CLIP_QUICK_GELU"],
        clip_bgr=g["CLIP_BGR"],
        motion_background=g["MOTION_BACKGROUND"],
        workers=g["WORKERS"],
        ray=g["RAY"] or None,
        ray_gpus=g["RAY_GPUS_PER_TASK"],
    )
    if g["REALTIME_EXTRACT"]:
        return settings.realtime()
    return settings.fast() if g["FAST_EXTRACT"] else settings


def check_settings(g: dict) -> None:
    """Raise InputError naming a bad value, before any work."""
    if g["DATASET"] == SYNTHETIC:
        raise InputError(
            f"--dataset {SYNTHETIC} already comes as features (memfuse/synthetic.py): stage 0 has nothing "
            "to extract; give --dataset NAME of raw frames or videos in DATA_ROOT/NAME"
        )
    settings_of(g).check()
    if g["RAY"]:
        from memfuse.distributed import check_address

        check_address(g["RAY"])


def main(argv: list[str] | None = None) -> None:
    stage = begin(globals(), "extract_features.py", argv)
    check_settings(globals())
    splits = tuple(s.strip() for s in SPLITS.split(",") if s.strip())
    report = extract_dataset(
        stage.dataset, stage.data_root, OUT_ROOT, settings_of(globals()), splits=splits, force=FORCE, progress=PROGRESS
    )
    for split in splits:
        r = report[split]
        done = f"{r['frames']} frames, {r['objects']} objects, {r['wall_s']:.1f}s"
        print(f"{stage.dataset}/{split}: {'skipped (exists; --force to redo)' if r['skipped'] else done}")
    print(f"copied: {', '.join(report['copied'])}")
    print(f"wrote {report['out_dir']} in {report['total_wall_s']:.1f}s")
    stage.finish()


if __name__ == "__main__":
    run(main)

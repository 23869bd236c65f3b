"""Poses for videos that come without them (stage 0): BlazePose's landmark model run on
each object box, top-down as AlphaPose is run on detector boxes for AI-VAD.

The model is ``pose_landmark_full.tflite`` from the ``mediapipe==0.10.14`` wheel (33
landmarks), run by a plain TFLite runtime (``ai-edge-litert``), so neither mediapipe's own
dependencies nor a download at run time are needed; the file is given by its local path::

    pip install ai-edge-litert==2.3.0
    pip download --no-deps mediapipe==0.10.14 -d /tmp/mp
    unzip -j /tmp/mp/mediapipe-0.10.14-*.whl mediapipe/modules/pose_landmark/pose_landmark_full.tflite -d data/models

For each box, the crop fed to the model is a square of side :data:`ROI_SCALE` x the box's
longer side, centred on the box, resized to 256 x 256 (BlazePose's region of interest is such
a square around the person). The model also gives a person-presence score; a box scoring
below :data:`PRESENCE` holds no person and gives no pose row. A kept pose is BlazePose's 33
landmarks reduced to COCO's 17 keypoints (:data:`COCO_FROM_BLAZEPOSE`), as (x, y) pairs in
pixels **relative to the box's top-left corner**: the layout of AI-VAD's AlphaPose poses
(``pose.npy``, one (p_i, 34) array per frame, rows not matched to boxes).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..io import InputError

INPUT_SIZE = 256  # the landmark model's square input, pixels
ROI_SCALE = 1.25  # side of the square crop / the box's longer side
PRESENCE = 0.5  # the model's person-presence score below which a box holds no person
N_LANDMARKS = 39  # rows of the model's landmark output (33 body landmarks, then 6 auxiliary)
# COCO keypoint k is BlazePose landmark COCO_FROM_BLAZEPOSE[k]: nose, eyes, ears, shoulders,
# elbows, wrists, hips, knees, ankles (left before right, as COCO)
COCO_FROM_BLAZEPOSE = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
POSE_DIM = 2 * len(COCO_FROM_BLAZEPOSE)  # 34
# A box the model is not run on with person_shaped=True: shorter than PERSON_MIN_HEIGHT
# pixels (the crop is blown up > 10x and the model sees no person) or wider than tall: such
# boxes rarely hold a person the model finds (docs/results.md, "Measurements behind
# constants in the code").
PERSON_MIN_HEIGHT = 20.0
PERSON_MIN_ASPECT = 1.0  # height / width


def person_shaped(
    boxes: np.ndarray, min_height: float = PERSON_MIN_HEIGHT, min_aspect: float = PERSON_MIN_ASPECT
) -> np.ndarray:
    """(n,) bool: which of the (n, 4) boxes ``x1, y1, x2, y2`` are tall enough to pose."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    h, w = b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]
    return (h >= min_height) & (h >= min_aspect * w)


def roi_transform(box: np.ndarray, scale: float = ROI_SCALE, size: int = INPUT_SIZE) -> np.ndarray:
    """(2, 3) affine map from frame pixels to the model's input for one box ``x1, y1, x2, y2``:
    the square of side ``scale`` x the longer side, centred on the box, onto ``size`` x ``size``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = scale * max(x2 - x1, y2 - y1, 1.0)
    k = size / side
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return np.array([[k, 0.0, size / 2 - k * cx], [0.0, k, size / 2 - k * cy]], dtype=np.float32)


def landmarks_to_pose(landmarks: np.ndarray, box: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Model landmarks (39, 5) in input pixels -> (34,) COCO-17 ``x0, y0, x1, y1, ...`` in
    pixels relative to the box's top-left corner."""
    k, tx, ty = transform[0, 0], transform[0, 2], transform[1, 2]
    xy = landmarks[list(COCO_FROM_BLAZEPOSE), :2]
    frame_xy = (xy - [tx, ty]) / k
    return (frame_xy - [float(box[0]), float(box[1])]).astype(np.float32).reshape(-1)


class PoseModel:
    """BlazePose's landmark model on object boxes. ``PoseModel(path)(rgb, boxes)`` ->
    (p, 34) float32 poses of the boxes that hold a person (p <= len(boxes)). With
    ``person_shaped``, only boxes :func:`person_shaped` passes are run (a speed setting)."""

    def __init__(self, path: Path | str, threads: int = 1, presence: float = PRESENCE, person_shaped: bool = False):
        path = Path(path)
        if not path.is_file():
            raise InputError(
                f"pose model {path} not found: see memfuse/extract/pose.py for the two commands that fetch "
                "pose_landmark_full.tflite from the mediapipe wheel"
            )
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise InputError("the pose model needs a TFLite runtime: pip install ai-edge-litert==2.3.0") from None
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        inp = self.interpreter.get_input_details()[0]
        if list(inp["shape"]) != [1, INPUT_SIZE, INPUT_SIZE, 3]:
            raise InputError(
                f"{path}: input shape {list(inp['shape'])} is not BlazePose's landmark model [1, 256, 256, 3]"
            )
        self.input = inp["index"]
        outputs = sorted(self.interpreter.get_output_details(), key=lambda d: d["name"])
        # Identity: (1, 195) landmarks; Identity_1: (1, 1) person presence
        self.landmarks, self.presence_out = outputs[0]["index"], outputs[1]["index"]
        self.presence = presence
        self.person_shaped = person_shaped

    def run(self, crop: np.ndarray) -> tuple[np.ndarray, float]:
        """One (256, 256, 3) uint8 RGB crop -> landmarks (39, 5) in input pixels, presence score."""
        self.interpreter.set_tensor(self.input, (crop.astype(np.float32) / 255.0)[None])
        self.interpreter.invoke()
        landmarks = self.interpreter.get_tensor(self.landmarks).reshape(N_LANDMARKS, 5)
        return landmarks, float(self.interpreter.get_tensor(self.presence_out).reshape(-1)[0])

    def __call__(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        if rgb.ndim == 2:
            rgb = cv2.cvtColor(rgb, cv2.COLOR_GRAY2RGB)
        rows = []
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if self.person_shaped:
            boxes = boxes[person_shaped(boxes)]
        for box in boxes:
            m = roi_transform(box)
            crop = cv2.warpAffine(
                rgb, m, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
            )
            landmarks, presence = self.run(crop)
            if presence >= self.presence:
                rows.append(landmarks_to_pose(landmarks, box, m))
        return np.stack(rows) if rows else np.zeros((0, POSE_DIM), dtype=np.float32)

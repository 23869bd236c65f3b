"""Feature loading, label formats, metrics and the bad-input errors."""

import numpy as np
import pytest
from scipy.io import savemat

from memfuse import data as D
from memfuse.data import zscore, zscore_fit
from memfuse.io import InputError, save_npy


def obj(frames):
    out = np.empty(len(frames), dtype=object)
    out[:] = [np.asarray(f, dtype=np.float32) for f in frames]
    return out


def write_split(root, split, n_frames=4, app_dim=512, pose_dim=34, bins=1, empty_pose=(1,), n_obj=2, mutate=None):
    rng = np.random.default_rng(0)
    base = root / "toy" / "extracted_features" / split
    arrays = {  # per modality; written to AI-VAD's file of each (D.MODALITY_FILES)
        "vel": [rng.random((n_obj, bins)) for _ in range(n_frames)],
        "app": [rng.random((n_obj, app_dim)) for _ in range(n_frames)],
        "pose": [np.zeros((0, pose_dim)) if f in empty_pose else rng.random((1, pose_dim)) for f in range(n_frames)],
    }
    if mutate:
        mutate(arrays)
    for modality, frames in arrays.items():
        save_npy(base / D.MODALITY_FILES[modality], obj(frames))


@pytest.fixture
def toy(tmp_path):
    write_split(tmp_path, "train")
    write_split(tmp_path, "test", n_frames=6)
    save_npy(tmp_path / "toy" / "test_clip_lengths.npy", np.array([2, 6]))
    save_npy(tmp_path / "toy" / "frame_labels.npy", np.array([[0, 1, 0, 0, 1, 1]]))
    return tmp_path


def test_load_split_stacks_frames(toy):
    s = D.load_split(toy, "toy", "train")
    assert s.n_frames == 4 and s.app.values.shape == (8, 512) and s.vel.values.shape == (8, 1)
    np.testing.assert_array_equal(s.pose.counts, [1, 0, 1, 1])
    assert D.validate_dataset(toy, "toy")["test"]["anomalous_frames"] == 3


@pytest.mark.parametrize("fmt", ["npy", "mnad", "mat", "shanghaitech", "ucsd_m"])
def test_label_formats(tmp_path, fmt):
    ends = np.array([3, 5])
    want = np.array([0, 1, 1, 1, 0])
    base = tmp_path / "toy"
    base.mkdir()
    if fmt == "npy":
        np.save(base / "frame_labels.npy", want[None, :])
    elif fmt == "mnad":
        np.save(base / "frame_labels_toy.npy", want)
    elif fmt == "mat":  # ranges (2, k), 1-based inclusive, per video
        cell = np.empty(2, dtype=object)
        cell[0], cell[1] = np.array([[2], [3]]), np.array([[1], [1]])
        savemat(base / "toy.mat", {"gt": cell})
    elif fmt == "shanghaitech":
        (base / "testing" / "test_frame_mask").mkdir(parents=True)
        np.save(base / "testing" / "test_frame_mask" / "01_0001.npy", want[:3])
        np.save(base / "testing" / "test_frame_mask" / "01_0002.npy", want[3:])
    else:
        (base / "testing").mkdir()
        (base / "testing" / "UCSDtoy.m").write_text(
            "TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [2:3];\nTestVideoFile{end+1}.gt_frame = [1:1];\n"
        )
    np.testing.assert_array_equal(D.load_labels(tmp_path, "toy", ends), want)


def test_ped2_labels_agree_between_formats():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (root / "ped2" / "testing" / "UCSDped2.m").exists():
        pytest.skip("shared Ped2 data not present")
    ends = np.load(root / "ped2" / "test_clip_lengths.npy")
    a = np.load(root / "ped2" / "frame_labels_ped2.npy").ravel()
    b = D._labels_from_m(root / "ped2" / "testing" / "UCSDped2.m", ends)
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- bad input
def _expect(tmp_path, match, **kw):
    write_split(tmp_path, "train", **kw)
    write_split(tmp_path, "test", n_frames=6)
    save_npy(tmp_path / "toy" / "test_clip_lengths.npy", np.array([2, 6]))
    save_npy(tmp_path / "toy" / "frame_labels.npy", np.zeros(6))
    with pytest.raises(InputError, match=match):
        D.validate_dataset(tmp_path, "toy")


def test_error_nan(tmp_path):
    def nan(a):
        a["app"][2][0, 5] = np.nan

    _expect(tmp_path, r"deep_features.npy: NaN or inf .*frame 2", mutate=nan)


def test_error_wrong_width(tmp_path):
    _expect(tmp_path, r"pose.npy: pose features are 30-d, expected 34-d", pose_dim=30)
    _expect(tmp_path, r"deep_features.npy: appearance .* 256-d, expected 512-d", app_dim=256)


def test_error_frame_counts_differ(tmp_path):
    def drop(a):
        a["pose"] = a["pose"][:-1]

    _expect(tmp_path, r"frame counts differ", mutate=drop)


def test_error_objects_differ(tmp_path):
    def extra(a):
        a["vel"][1] = np.zeros((3, 1))

    _expect(tmp_path, r"frame 1 has 2 appearance rows but 3 velocity rows", mutate=extra)


def test_error_empty_velocity_frame(tmp_path):
    def empty(a):
        a["vel"][0] = np.zeros((0, 1))
        a["app"][0] = np.zeros((0, 512))

    _expect(tmp_path, r"frame 0 has no objects", mutate=empty)


def test_error_no_pose(tmp_path):
    _expect(tmp_path, r"pose", empty_pose=(0, 1, 2, 3))


def test_error_empty_split(tmp_path):
    _expect(tmp_path, r"empty split", n_frames=0)


def test_error_missing_file_names_stage(tmp_path):
    with pytest.raises(InputError, match=r"missing .*deep_features.npy.*extract_features.py"):
        D.load_split(tmp_path, "toy", "train")


def test_error_clip_lengths_and_labels(toy):
    save_npy(toy / "toy" / "test_clip_lengths.npy", np.array([2, 5]))
    with pytest.raises(InputError, match=r"end at 5 frames but the test features have 6"):
        D.validate_dataset(toy, "toy")
    save_npy(toy / "toy" / "test_clip_lengths.npy", np.array([2, 6]))
    save_npy(toy / "toy" / "frame_labels.npy", np.zeros(7))
    with pytest.raises(InputError, match=r"7 frame labels but the test split has 6"):
        D.validate_dataset(toy, "toy")


def test_zscore_is_fitted_on_train_and_survives_constant_features():
    x = np.array([[1.0, 5.0], [3.0, 5.0]], dtype=np.float32)
    mean, std = zscore_fit(x)
    np.testing.assert_allclose(zscore(x, mean, std), [[-1.0, 0.0], [1.0, 0.0]])


def test_box_heights_follow_the_velocity_rows_with_nan_for_whole_frame_entries(tmp_path):
    boxes = np.empty(3, dtype=object)
    boxes[:] = [
        np.array([[0, 10, 5, 40], [1, 0, 2, 7]], np.float32),
        np.zeros((0, 4), np.float32),
        np.array([[0, 5, 9, 25]]),
    ]
    (tmp_path / "cam").mkdir()
    np.save(tmp_path / "cam" / "cam_bboxes_train.npy", boxes, allow_pickle=True)
    layout = D.Ragged(np.zeros((4, 1), np.float32), np.array([0, 2, 3, 4]))
    heights, where = D.box_heights(tmp_path, "cam", "train", layout)
    np.testing.assert_array_equal(heights, [30.0, 7.0, np.nan, 20.0])
    assert where == "cam_bboxes_train.npy"
    # boxes that are not the rows' (another count in frame 0): no heights, and why
    other = D.Ragged(np.zeros((3, 1), np.float32), np.array([0, 1, 2, 3]))
    heights, why = D.box_heights(tmp_path, "cam", "train", other)
    assert heights is None and "frame 0 has 2 boxes and 1 velocity rows" in why
    assert D.box_heights(tmp_path, "cam", "test", layout) == (None, "no cam_bboxes_test.npy beside the features")
    # stage 0's motion boxes are moving regions: their heights are not taken
    meta = D.feature_path(tmp_path, "cam", "train", "vel").parent / "extract_meta.json"
    meta.parent.mkdir(parents=True)
    meta.write_text('{"boxes": "motion"}')
    assert D.box_heights(tmp_path, "cam", "train", layout) == (None, "cam_bboxes_train.npy holds motion boxes")

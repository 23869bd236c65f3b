"""memfuse.extract.motion: boxes of moving objects against a video's median background."""
import numpy as np
import pytest

from memfuse.extract.motion import MotionBoxes, MotionConfig, background_indices, box_agreement, iou_matrix


def moving_square(n_frames: int = 30, size: int = 12, h: int = 96, w: int = 128, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Grey frames of a textured still background with a bright square moving right, and
    the square's true box in each frame."""
    rng = np.random.default_rng(seed)
    bg = (rng.integers(60, 90, (h, w))).astype(np.uint8)
    frames, truth = [], []
    for t in range(n_frames):
        x, y = 5 + 3 * t, 40
        f = bg.copy()
        f[y:y + size, x:x + size] = 220
        frames.append(f)
        truth.append(np.array([[x, y, x + size, y + size]], dtype=np.float32))
    return frames, truth


def test_a_moving_square_is_boxed_in_every_frame():
    frames, truth = moving_square()
    detect = MotionBoxes([frames[i] for i in background_indices(len(frames))])
    found = [detect(f) for f in frames]
    assert all(len(b) == 1 for b in found)
    assert box_agreement(found, truth, 0.7)["recall"] == 1.0


def test_nothing_moving_gives_no_box_and_rgb_equals_grey():
    frames, _ = moving_square()
    still = [frames[0]] * 10
    detect = MotionBoxes(still)
    assert detect(still[3]).shape == (0, 4)
    rgb = np.repeat(frames[5][..., None], 3, axis=2)
    np.testing.assert_array_equal(MotionBoxes([np.repeat(f[..., None], 3, 2) for f in frames])(rgb), MotionBoxes(frames)(frames[5]))


def test_background_sample_is_even_and_bounded():
    idx = background_indices(1000, MotionConfig(background_frames=50))
    assert len(idx) == 50 and idx[0] == 0 and idx[-1] == 999 and np.all(np.diff(idx) > 0)
    assert background_indices(3).tolist() == [0, 1, 2] and background_indices(1).tolist() == [0]


def test_frame_of_another_size_is_an_error():
    frames, _ = moving_square()
    with pytest.raises(ValueError, match="background is 128x96"):
        MotionBoxes(frames)(np.zeros((50, 50), np.uint8))


def test_iou_and_agreement_known_values():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 0.0]])
    # each box is matched once: two found boxes on one reference give one match
    r = box_agreement([np.concatenate([a, a])], [a], 0.5)
    assert (r["recall"], r["precision"]) == (1.0, 0.5)
    assert box_agreement([np.zeros((0, 4))], [a])["recall"] == 0.0

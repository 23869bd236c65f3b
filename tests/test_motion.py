"""memfuse.extract.motion: boxes of moving objects against a video's median background."""

import numpy as np
import pytest

from memfuse.extract.motion import (
    MIN_SINGLES,
    MotionBoxes,
    MotionConfig,
    background_indices,
    box_agreement,
    iou_matrix,
    n_persons,
    person_size,
    split_component,
)


def moving_square(
    n_frames: int = 30, size: int = 12, h: int = 96, w: int = 128, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Grey frames of a textured still background with a bright square moving right, and
    the square's true box in each frame."""
    rng = np.random.default_rng(seed)
    bg = (rng.integers(60, 90, (h, w))).astype(np.uint8)
    frames, truth = [], []
    for t in range(n_frames):
        x, y = 5 + 3 * t, 40
        f = bg.copy()
        f[y : y + size, x : x + size] = 220
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
    np.testing.assert_array_equal(
        MotionBoxes([np.repeat(f[..., None], 3, 2) for f in frames])(rgb), MotionBoxes(frames)(frames[5])
    )


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


def walkers(n_frames: int = 40, h: int = 120, w: int = 200, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Grey frames of a still textured background with four upright 8x24 'walkers', each
    fast enough to stay out of the median background. The first two walk side by side,
    touching (one connected blob), the others alone. Returns the frames and true boxes."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(60, 90, (h, w)).astype(np.uint8)
    frames, truth = [], []
    for t in range(n_frames):
        xs, ys = [60, 68, 150, 10 + 4 * t], [2 * t, 2 * t, 2 * t, 94]
        f, boxes = bg.copy(), []
        for x, y in zip(xs, ys):
            f[y : y + 24, x : x + 8] = 220
            boxes.append([x, y, x + 8, y + 24])
        frames.append(f)
        truth.append(np.array(boxes, np.float32))
    return frames, truth


def test_touching_walkers_are_split_into_one_box_each():
    frames, truth = walkers()
    detect = MotionBoxes([frames[i] for i in background_indices(len(frames))])
    assert detect.person is not None and 6 <= detect.person[0] <= 12 and 22 <= detect.person[1] <= 30
    merged = frames[20]
    assert len(MotionBoxes(frames, MotionConfig(split=False))(merged)) == 3  # the two touching walkers are one blob
    found = detect(merged)
    assert len(found) == 4
    assert box_agreement([found], [truth[20]], 0.6)["recall"] == 1.0


def test_split_component_is_deterministic_and_finds_side_by_side_parts():
    ys, xs = np.mgrid[0:24, 0:8]
    xs, ys = np.concatenate([xs.ravel(), xs.ravel() + 8]), np.concatenate([ys.ravel(), ys.ravel()])
    boxes = split_component(xs, ys, 2)
    assert sorted(boxes) == [[0, 0, 8, 24], [8, 0, 16, 24]]
    assert split_component(xs, ys, 2) == boxes
    assert split_component(xs, ys, 1) == [[0, 0, 16, 24]]


def test_person_size_and_how_many_persons_a_component_holds():
    single = np.array([[0, 0, 10, 25, 200]])  # x, y, width, height, area: upright
    wide = np.array([[0, 0, 40, 20, 600]])
    assert person_size([wide] * 50) is None  # nothing shaped like a person: size unknown
    assert person_size([single] * (MIN_SINGLES - 1)) is None
    assert person_size([single] * MIN_SINGLES + [wide]) == (10.0, 25.0, 200.0)
    person = (10.0, 25.0, 200.0)
    assert n_persons(12, 30, 250, person) == 1  # within the margin of one person
    assert n_persons(30, 25, 610, person) == 3
    assert n_persons(400, 25, 1e5, person) == 8  # capped

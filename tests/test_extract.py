"""Stage 0 (extract_features.py, memfuse.extract): fast tests on synthetic data."""

from __future__ import annotations

import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import extract_features as ef
import memfuse.extract.pipeline as P
from memfuse.extract import ExtractSettings, extract_dataset
from memfuse.extract.appearance import APPEARANCE_DIM, HogGeometry, Pixels, hog, make_backbone
from memfuse.extract.clip_vit import ClipVisionEncoder, encode, load_clip_vision, preprocess_crops
from memfuse.extract.frames import (
    check_boxes,
    crop,
    crop_slices,
    list_split_videos,
    list_videos,
    read_frame,
    split_boxes_by_video,
)
from memfuse.extract.stream import FrameExtractor
from memfuse.extract.velocity import FLOW_FRAMES, FlowConfig, box_velocity, compute_flow, frame_flow, video_velocity
from memfuse.io import InputError
from memfuse.pipeline import run

ROOT = Path(__file__).resolve().parents[1]
ULTRAFAST = ExtractSettings(flow="dis_ultrafast", workers=1)  # the quickest flow, in this process


def main(argv: list[str]) -> None:
    """extract_features.main on the script's own defaults. main configures the script's
    globals in place (memfuse.config), so without this a second call in one process would
    start from the first one's flags."""
    saved = dict(vars(ef))
    try:
        ef.main(argv)
    finally:
        for name in set(vars(ef)) - set(saved):
            delattr(ef, name)
        vars(ef).update(saved)


def textured(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(h // 4, w // 4)).astype(np.uint8)
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(img, (0, 0), 1.0)


# ---- velocity --------------------------------------------------------------------------------
# Directions well inside a 45-degree sector (image coordinates, y down; AI-VAD bins the raw
# flow angle, so a purely horizontal motion sits on the bin 0 / bin 7 edge).
@pytest.mark.parametrize("dx,dy,expected_bin", [(3, 1, 0), (2, 3, 1), (-1, 3, 2), (-3, -1, 4), (1, -3, 6)])
def test_velocity_known_shift(dx, dy, expected_bin):
    big = textured(200, 240)
    prev = big[40:160, 40:200]
    cur = big[40 - dy : 160 - dy, 40 - dx : 200 - dx]  # content moves by (+dx, +dy)
    flow = compute_flow(prev, cur, FlowConfig("dis_medium", 1.0))
    box = np.array([[40, 30, 120, 90]], np.float32)  # interior, away from borders
    v1 = box_velocity(flow, box, bins=1)
    assert v1.shape == (1, 1)
    assert v1[0, 0] == pytest.approx(abs(dx) + abs(dy), rel=0.15)
    v8 = box_velocity(flow, box, bins=8)
    assert v8.shape == (1, 8)
    assert int(np.argmax(v8[0])) == expected_bin
    assert v8.sum() == pytest.approx(v1[0, 0], rel=1e-5)  # bins split the mean magnitude
    assert v8[0, expected_bin] > 0.8 * v8.sum()


def moving_block(shift: int, size: int = 24) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two 120x160 frames: a textured block on a still textured background, moved ``shift``
    px right from the first to the second; and the block's box in the second (the boxes' frame)."""
    block = textured(size, size, seed=1)
    prev, cur = textured(seed=2), textured(seed=2)
    prev[48 : 48 + size, 50 : 50 + size] = block
    cur[48 : 48 + size, 50 + shift : 50 + shift + size] = block
    return prev, cur, np.array([[50 + shift, 48, 50 + shift + size, 48 + size]], np.float32)


def test_flow_on_the_boxes_frame_is_the_flow_back_reversed_and_points_along_the_motion():
    """``current``: the flow from t back to t-1, on frame t's pixels where the boxes are,
    negated; ``previous``: AI-VAD's flow from t-1 to t. Both see the block move right by its
    shift (bin 0 or 7 of 8, the 0-degree edge), so direction bins mean the same in both."""
    shift = 6
    prev, cur, box = moving_block(shift)
    cfg = FlowConfig("dis_medium", frame="current")
    np.testing.assert_array_equal(frame_flow(prev, cur, cfg), -compute_flow(cur, prev, cfg))
    np.testing.assert_array_equal(frame_flow(prev, cur, replace(cfg, frame="previous")), compute_flow(prev, cur, cfg))
    for frame in FLOW_FRAMES:
        v = box_velocity(frame_flow(prev, cur, replace(cfg, frame=frame)), box, bins=8)
        assert v[0, [0, 7]].sum() > 0.9 * v.sum(), frame
        assert v.sum() == pytest.approx(shift, rel=0.2), frame
    with pytest.raises(ValueError, match="unknown flow frame 'next'"):
        frame_flow(prev, cur, replace(cfg, frame="next"))


def test_flow_settings_recorded_before_the_frame_and_span_settings_read_as_ai_vads():
    old = FlowConfig.from_settings({"method": "dis_fine", "scale": 1, "blur": 0})
    assert (old.frame, old.span) == ("previous", 1)
    recorded = {"method": "dis_fine", "scale": 1, "blur": 0, "frame": "current", "span": 2}
    assert FlowConfig.from_settings(recorded) == FlowConfig("dis_fine", 1.0, 0.0, "current", 2)
    assert FlowConfig("dis_fine", span=2.0).span == 2 and isinstance(FlowConfig("dis_fine", span=2.0).span, int)
    for span in (0, 1.5):
        with pytest.raises(ValueError, match="flow span must be a whole number of frames >= 1"):
            FlowConfig("dis_fine", span=span)


def block_video(speed: int, frames: int = 4, size: int = 24) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A textured block moving ``speed`` px right a frame over a still textured background,
    and its box in each frame."""
    block, video, boxes = textured(size, size, seed=1), [], []
    for t in range(frames):
        img = textured(seed=2)
        x = 40 + speed * t
        img[48 : 48 + size, x : x + size] = block
        video.append(img)
        boxes.append(np.array([[x, 48, x + size, 48 + size]], np.float32))
    return video, boxes


def test_velocity_over_a_span_is_the_flow_from_span_frames_back_per_frame():
    """Span 2: frame t's velocity is the flow from t-2, halved (frame 1 reaches back to frame
    0 only, over one frame); an object at constant speed has the same velocity a frame over
    either span; the streaming extractor and the in-memory one agree frame by frame."""
    speed = 3
    video, boxes = block_video(speed)
    one, two = FlowConfig("dis_medium"), FlowConfig("dis_medium", span=2)
    np.testing.assert_array_equal(frame_flow(video[0], video[2], two, apart=2), frame_flow(video[0], video[2], one) / 2)
    v1, v2 = video_velocity(video, boxes, one), video_velocity(video, boxes, two)
    assert np.all(v2[0] == 0)
    np.testing.assert_array_equal(v2[1], v1[1])  # reaches back to the video's first frame
    for t in (2, 3):
        np.testing.assert_array_equal(v2[t], box_velocity(frame_flow(video[t - 2], video[t], two, apart=2), boxes[t]))
        assert v2[t][0, 0] == pytest.approx(speed, rel=0.2)
        assert v1[t][0, 0] == pytest.approx(speed, rel=0.2)
    extractor = FrameExtractor(backbone=lambda rgb, b, whole: np.zeros((len(b), 512)), flow=two, bins=1)
    for t, img in enumerate(video):
        np.testing.assert_array_equal(extractor(np.repeat(img[..., None], 3, axis=2), boxes[t]).vel, v2[t])
    with pytest.raises(ValueError, match="at least 1 apart"):
        frame_flow(video[0], video[1], two, apart=0)


def test_velocity_bins_definition_exact():
    # Hand-made flow: left half moves right by 2 (bin 0 of 8), right half moves up by 1 (bin 6).
    flow = np.zeros((10, 20, 2), np.float32)
    flow[:, :10, 0] = 2.0
    flow[:, 10:, 1] = -1.0
    v = box_velocity(flow, np.array([[0, 0, 20, 10]], np.float32), bins=8)
    expected = np.zeros(8)
    expected[0] = 2.0 * 100 / 200  # sum of magnitudes in the bin / pixels in the box
    expected[6] = 1.0 * 100 / 200
    np.testing.assert_allclose(v[0], expected, atol=1e-6)
    np.testing.assert_allclose(box_velocity(flow, np.array([[0, 0, 20, 10]]), bins=1), [[1.5]], atol=1e-6)


def test_first_frame_zero_and_upsampled_flow_units():
    big = textured(200, 240)
    frames = [big[40:160, 40:200], big[40:160, 38:198]]  # shift +2 px in x
    boxes = [np.array([[40, 30, 120, 90]], np.float32)] * 2
    vel = video_velocity(frames, boxes, FlowConfig("dis_fast", 2.0), bins=1)
    assert np.all(vel[0] == 0)
    assert vel[1][0, 0] == pytest.approx(2.0, rel=0.15)  # native pixels, not upsampled ones


# ---- boxes and crops ----------------------------------------------------------------------------
def test_whole_frame_entry_for_frame_without_boxes():
    for empty in (np.zeros((0, 4)), np.array([]), []):
        b, rep = check_boxes(empty, 36, 24)
        np.testing.assert_array_equal(b, [[0, 0, 36, 24]])
        assert rep.clipped == rep.grown == 0


def test_crop_geometry_at_border():
    img = np.arange(24 * 36).reshape(24, 36)
    b, rep = check_boxes(np.array([[30.2, 20.5, 40.0, 30.0]]), 36, 24)
    assert rep.clipped == 1
    np.testing.assert_allclose(b, [[30.2, 20.5, 36, 24]], atol=1e-5)
    ys, xs = crop_slices(b[0])
    assert (ys, xs) == (slice(21, 24), slice(31, 36))  # AI-VAD: ceil of both corners
    assert crop(img, b[0]).shape == (3, 5)
    # A box that touches the right/bottom edge exactly is untouched.
    b2, rep2 = check_boxes(np.array([[0.0, 0.0, 36.0, 24.0]]), 36, 24)
    assert rep2.clipped == 0 and crop(img, b2[0]).shape == (24, 36)


def test_zero_area_box_is_grown_and_order_kept():
    boxes = np.array([[5, 5, 10, 10], [7.2, 3, 7.2, 9], [50, 50, 60, 60], [1, 1, 4, 4]], np.float32)
    b, rep = check_boxes(boxes, 36, 24)
    assert len(b) == 4  # never drops or reorders
    np.testing.assert_allclose(b[0], boxes[0])
    np.testing.assert_allclose(b[3], boxes[3])
    assert rep.clipped == 1 and rep.grown >= 2  # box 1 zero width; box 2 outside -> clipped, then empty
    for row in b:
        assert crop(np.zeros((24, 36)), row).size >= 1
    with pytest.raises(InputError, match="x2 < x1"):
        check_boxes(np.array([[10, 0, 5, 5]]), 36, 24, where="v01 f1")
    with pytest.raises(InputError, match="NaN"):
        check_boxes(np.array([[np.nan, 0, 5, 5]]), 36, 24)


# ---- appearance ------------------------------------------------------------------------------
def test_hog_default_shape_and_determinism():
    frame = cv2.cvtColor(textured(), cv2.COLOR_GRAY2RGB)
    boxes, _ = check_boxes(np.array([[10, 10, 30, 60], [0, 0, 160, 120], [150, 100, 160, 120]]), 160, 120)
    bb = make_backbone("hog")
    a, b = bb(frame, boxes), HogGeometry()(frame.copy(), boxes)
    assert a.shape == (3, APPEARANCE_DIM) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(a).all()
    np.testing.assert_allclose(np.linalg.norm(hog(np.full((1, 64, 32), 7, np.uint8))), 0, atol=1e-3)  # flat patch
    # Batch-invariant: one box alone gives the same row.
    np.testing.assert_allclose(bb(frame, boxes[:1]), a[:1], atol=1e-6)
    # Geometry part: the wider box has the larger log width.
    assert a[1, 504] > a[0, 504]
    p = Pixels()(frame, boxes)
    assert p.shape == (3, APPEARANCE_DIM) and 0 <= p.min() and p.max() <= 1


def _random_openai_state_dict(layers: int = 2, width: int = 64, patch: int = 16, res: int = 32, out: int = 512):
    torch.manual_seed(0)
    m = ClipVisionEncoder(input_resolution=res, patch_size=patch, width=width, layers=layers, output_dim=out)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.02 * torch.randn_like(p))
    sd = {f"visual.{k}": v.clone() for k, v in m.state_dict().items()}
    # a full CLIP checkpoint also holds the text tower and logit scale
    sd["token_embedding.weight"] = torch.zeros(10, 8)
    sd["logit_scale"] = torch.tensor(4.6)
    return m.eval(), sd


def test_clip_state_dict_round_trip(tmp_path):
    ref, sd = _random_openai_state_dict()
    assert "visual.transformer.resblocks.1.attn.in_proj_weight" in sd
    torch.save(sd, tmp_path / "w.pt")
    model = load_clip_vision(tmp_path / "w.pt")
    assert model.input_resolution == 32 and model.output_dim == 512 and len(model.transformer.resblocks) == 2
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x))

    # TorchScript file (OpenAI's ViT-B-16.pt format): state_dict() of a scripted module.
    class Wrap(torch.nn.Module):
        def __init__(self, visual):
            super().__init__()
            self.visual = visual

        def forward(self, x):
            return self.visual(x)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(Wrap(ref), x), str(tmp_path / "jit.pt"))
    with torch.no_grad():
        torch.testing.assert_close(load_clip_vision(tmp_path / "jit.pt")(x), ref(x))
    with pytest.raises(InputError, match="CLIP"):
        load_clip_vision({"foo": torch.zeros(1)})


def test_clip_backbone_shape_and_batch_invariance(tmp_path):
    _, sd = _random_openai_state_dict(layers=1, width=64, res=224)
    torch.save(sd, tmp_path / "w.pt")
    bb = make_backbone("clip", tmp_path / "w.pt")
    frame = cv2.cvtColor(textured(), cv2.COLOR_GRAY2RGB)
    boxes, _ = check_boxes(np.array([[10, 10, 30, 60], [40, 20, 90, 110], [0, 0, 160, 120]]), 160, 120)
    out = bb(frame, boxes)
    assert out.shape == (3, 512) and out.dtype == np.float32
    np.testing.assert_allclose(bb(frame, boxes[1:2]), out[1:2], rtol=1e-4, atol=1e-5)
    x = preprocess_crops(frame, boxes)
    assert x.shape == (3, 3, 224, 224)
    np.testing.assert_allclose(encode(bb.model, x, batch_size=1), out, rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match="--clip-weights"):
        make_backbone("clip", None)


# ---- end to end on a tiny dataset ----------------------------------------------------------------
W, H = 64, 48


def write_poses(base: Path, frames: dict[str, int]) -> None:
    """One zero pose per frame: stage 0 copies the dataset's poses."""
    for split, n in frames.items():
        (base / "extracted_features" / split).mkdir(parents=True, exist_ok=True)
        pose = np.empty(n, dtype=object)
        pose[:] = [np.zeros((1, 34), np.float32)] * n
        np.save(base / "extracted_features" / split / "pose.npy", pose, allow_pickle=True)


def make_dataset(root: Path, name: str = "tiny", n_videos: int = 2, n_frames: int = 4) -> dict:
    rng = np.random.default_rng(1)
    base = root / name
    boxes = {}
    for split, folder in (("train", "training"), ("test", "testing")):
        per_frame = []
        for v in range(n_videos):
            d = base / folder / "frames" / f"{v + 1:02d}"
            d.mkdir(parents=True)
            for f in range(n_frames):
                cv2.imwrite(str(d / f"{f + 1:03d}.jpg"), rng.integers(0, 256, (H, W), dtype=np.uint8))
                k = (v + f) % 3  # 0, 1 or 2 boxes; some frames have none
                b = np.array([[2 + 10 * i, 3, 12 + 10 * i + f, 20 + i] for i in range(k)], np.float64).reshape(k, 4)
                per_frame.append(b)
        arr = np.empty(len(per_frame), dtype=object)
        arr[:] = per_frame
        np.save(base / f"{name}_bboxes_{split}.npy", arr, allow_pickle=True)
        boxes[split] = per_frame
    write_poses(base, {"train": n_videos * n_frames, "test": n_videos * n_frames})
    np.save(base / "test_clip_lengths.npy", np.cumsum([n_frames] * n_videos))
    np.save(base / f"frame_labels_{name}.npy", np.zeros((1, n_videos * n_frames), np.int64))
    return boxes


@pytest.mark.parametrize("workers", [1, 2])
def test_extract_dataset_end_to_end(tmp_path, workers):
    boxes = make_dataset(tmp_path / "in")
    out = tmp_path / "out"
    settings = ExtractSettings(flow="dis_ultrafast", flow_scale=1.0, workers=workers)
    rep = extract_dataset("tiny", tmp_path / "in", out, settings, progress=False)
    assert set(rep["train"]) >= {"wall_s", "skipped"} and not rep["train"]["skipped"]
    for split in ("train", "test"):
        d = out / "tiny" / "extracted_features" / split
        vel = np.load(d / "velocity.npy", allow_pickle=True)
        app = np.load(d / "deep_features.npy", allow_pickle=True)
        assert vel.dtype == object and app.dtype == object and len(vel) == len(app) == 8
        for i, b in enumerate(boxes[split]):
            n = max(len(b), 1)
            assert vel[i].shape == (n, 8) and app[i].shape == (n, 512)  # 'tiny' is not ped2: 8 bins
            assert vel[i].dtype == np.float32 and app[i].dtype == np.float32
            if len(b):  # object order = box order: geometry part holds log(1 + crop width)
                widths = np.ceil(b[:, 2]) - np.ceil(b[:, 0])
                np.testing.assert_allclose(app[i][:, 504], np.log1p(widths), rtol=1e-5)
            else:  # whole-frame entry
                assert app[i][0, 511] == 1 and app[i][0, 504] == pytest.approx(np.log1p(W))
        assert np.all(vel[0] == 0) and np.all(vel[4] == 0)  # first frame of each video
    # A complete AI-VAD-format dataset: the shared loader reads it.
    from memfuse.data import load_clip_lengths, load_labels, load_split

    s = load_split(out, "tiny", "train", ("app", "vel", "pose"))
    assert s.n_frames == 8
    ends = load_clip_lengths(out, "tiny", "test", 8)
    assert load_labels(out, "tiny", ends).shape == (8,)
    assert (out / "tiny" / "train_clip_lengths.npy").exists()  # computed: absent in the input
    # Re-run skips; --force redoes.
    rep2 = extract_dataset("tiny", tmp_path / "in", out, settings, progress=False)
    assert rep2["train"]["skipped"] and rep2["test"]["skipped"]
    rep3 = extract_dataset("tiny", tmp_path / "in", out, settings, force=True, splits=("test",), progress=False)
    assert not rep3["test"]["skipped"]


def test_extract_deterministic_and_cli(tmp_path):
    make_dataset(tmp_path / "in")
    main(
        [
            "--dataset",
            "tiny",
            "--data-root",
            str(tmp_path / "in"),
            "--out-root",
            str(tmp_path / "a"),
            "--flow",
            "dis_ultrafast",
            "--flow-scale",
            "1",
            "--velocity-bins",
            "1",
            "--no-progress",
        ]
    )
    settings = ExtractSettings(flow="dis_ultrafast", flow_scale=1.0, bins=1, workers=2)
    extract_dataset("tiny", tmp_path / "in", tmp_path / "b", settings, progress=False)
    for f in ("velocity.npy", "deep_features.npy"):
        a = np.load(tmp_path / "a" / "tiny" / "extracted_features" / "test" / f, allow_pickle=True)
        b = np.load(tmp_path / "b" / "tiny" / "extracted_features" / "test" / f, allow_pickle=True)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(InputError, match="--clip-weights"):  # clip without weights
        main(
            [
                "--dataset",
                "tiny",
                "--data-root",
                str(tmp_path / "in"),
                "--out-root",
                str(tmp_path / "a"),
                "--appearance",
                "clip",
                "--no-progress",
                "--force",
            ]
        )


def cli(root: Path, out: Path, *flags: str, dataset: str = "tiny") -> list[str]:
    """extract_features.py's flags for ``root/dataset`` -> ``out``, no progress bars."""
    return ["--dataset", dataset, "--data-root", str(root), "--out-root", str(out), "--no-progress", *flags]


def meta(out: Path, split: str, dataset: str = "tiny") -> dict:
    import json

    return json.loads((out / dataset / "extracted_features" / split / "extract_meta.json").read_text())


def test_cli_fast_extract_yields_to_a_flow_asked_for(tmp_path):
    make_dataset(tmp_path / "in")
    main(cli(tmp_path / "in", tmp_path / "a", "--fast-extract", "--splits", "test", "--workers", "1"))
    assert meta(tmp_path / "a", "test")["settings"]["flow"]["method"] == P.FAST_FLOW
    assert not (tmp_path / "a" / "tiny" / "extracted_features" / "train" / "velocity.npy").exists()  # --splits
    main(
        cli(
            tmp_path / "in",
            tmp_path / "b",
            "--fast-extract",
            "--flow",
            "dis_ultrafast",
            "--splits",
            "test",
            "--workers",
            "1",
        )
    )
    assert meta(tmp_path / "b", "test")["settings"]["flow"]["method"] == "dis_ultrafast"


def test_the_dataset_file_sets_the_velocity_bins(tmp_path):
    """config/datasets/ped2.toml: VELOCITY_BINS = 1, for the script (through the configurator)
    and for the library (bins None); a dataset without a file gets the script's default."""
    assert P.dataset_bins("tiny") == ef.VELOCITY_BINS == 8  # no config/datasets/tiny.toml
    make_dataset(tmp_path / "in", name="ped2")
    main(cli(tmp_path / "in", tmp_path / "a", "--flow", "dis_ultrafast", "--splits", "test", dataset="ped2"))
    extract_dataset("ped2", tmp_path / "in", tmp_path / "b", ULTRAFAST, splits=("test",), progress=False)
    for out in ("a", "b"):
        assert meta(tmp_path / out, "test", "ped2")["settings"]["bins"] == 1
        vel = np.load(tmp_path / out / "ped2" / "extracted_features" / "test" / "velocity.npy", allow_pickle=True)
        assert all(v.shape[1] == 1 for v in vel)


def test_cli_errors_are_one_line_before_any_work(tmp_path):
    make_dataset(tmp_path / "in")
    with pytest.raises(SystemExit) as exc:  # the synthetic data comes as features
        run(main, ["--data-root", str(tmp_path / "in"), "--out-root", str(tmp_path / "o")])
    assert str(exc.value.code).startswith("error: --dataset synthetic already comes as features")
    assert "\n" not in str(exc.value.code)
    bad = (
        (["--flow", "nope"], "unknown flow 'nope'"),
        (["--pose-every", "0"], "pose_every must be >= 1"),
        (["--splits", "train,val"], "splits must be some of train, test, got train, val"),
    )
    for flags, message in bad:
        with pytest.raises(InputError, match=message):
            main(cli(tmp_path / "in", tmp_path / "o", *flags))
    assert not (tmp_path / "o" / "tiny").exists()


@pytest.mark.parametrize(
    "change,message",
    [
        ({"appearance": "resnet"}, "unknown appearance backbone 'resnet'"),
        ({"flow": "flownet2"}, "unknown flow 'flownet2'"),
        ({"pose_every": 0}, "pose_every must be >= 1, got 0"),
        ({"bins": -1}, "bins must be >= 1"),
        ({"flow_scale": 0.0}, "flow_scale must be > 0"),
        ({"flow_blur": -1.0}, "flow_blur must be >= 0"),
        ({"flow_frame": "next"}, "unknown flow frame 'next'"),
        ({"flow_span": 0}, "flow_span must be a whole number of frames >= 1"),
        ({"clip_interpolation": "nearest"}, "unknown CLIP interpolation 'nearest'"),
    ],
)
def test_settings_check_names_the_bad_value(change, message):
    assert ExtractSettings().check() == ExtractSettings()
    with pytest.raises(InputError, match=message):
        replace(ExtractSettings(), **change).check()


def test_fast_profile_keeps_the_values_asked_for():
    fast = ExtractSettings().fast()
    assert (fast.flow, fast.pose_every, fast.person_shaped) == (P.FAST_FLOW, P.FAST_POSE_EVERY, True)
    mine = ExtractSettings(flow="dis_medium", pose_every=3, workers=1).fast()
    assert (mine.flow, mine.pose_every, mine.person_shaped, mine.workers) == ("dis_medium", 3, True, 1)


def test_the_script_globals_are_the_library_defaults():
    from memfuse.config import script_settings

    g = script_settings("extract_features.py")  # as the configurator reads them, before any flag
    assert set(ef.HELP) <= set(g)
    assert replace(ef.settings_of(g), bins=None) == ExtractSettings()
    assert ef.settings_of({**g, "FAST_EXTRACT": True}) == ExtractSettings(bins=8).fast()


def test_help_imports_no_opencv():
    """--help is cheap: stage 0's own modules import OpenCV only when they work."""
    code = (
        "import runpy, sys\nsys.argv = ['extract_features.py', '--help']\n"
        "try:\n    runpy.run_path('extract_features.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('cv2' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "--fast-extract" in out.stdout and out.stdout.split()[-1] == "False", out.stdout[-500:] + out.stderr[-500:]


# ---- bad input ----------------------------------------------------------------------------------
def test_missing_frames_folder_and_boxes(tmp_path):
    make_dataset(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "tiny" / "testing" / "frames")
    with pytest.raises(InputError, match="no videos in .*testing"):
        extract_dataset("tiny", tmp_path, tmp_path / "o", ExtractSettings(), progress=False)
    make_dataset(tmp_path / "x")
    # no boxes: those of what moves, written beside the features
    (tmp_path / "x" / "tiny" / "tiny_bboxes_train.npy").unlink()
    rep = extract_dataset("tiny", tmp_path / "x", tmp_path / "o", ULTRAFAST, progress=False)
    assert rep["train"]["boxes"] == "motion" and rep["test"]["boxes"] == "tiny_bboxes_test.npy"
    assert len(np.load(tmp_path / "o" / "tiny" / "tiny_bboxes_train.npy", allow_pickle=True)) == 8
    with pytest.raises(InputError, match="missing dataset folder"):
        extract_dataset("nope", tmp_path, tmp_path / "o", ExtractSettings(), progress=False)


def test_frame_count_mismatch_names_video(tmp_path):
    make_dataset(tmp_path)
    (tmp_path / "tiny" / "training" / "frames" / "02" / "004.jpg").unlink()
    with pytest.raises(InputError, match=r"8 frames of boxes but the videos have 7 frames.*02"):
        extract_dataset("tiny", tmp_path, tmp_path / "o", ExtractSettings(), progress=False)
    vids = list_videos(tmp_path / "tiny" / "training" / "frames")
    with pytest.raises(InputError, match="video 02"):
        split_boxes_by_video(np.empty(9, dtype=object), vids, "b.npy")


def test_unreadable_image_names_video_and_file(tmp_path):
    make_dataset(tmp_path)
    (tmp_path / "tiny" / "testing" / "frames" / "02" / "003.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match=r"video 02: cannot read frame image .*003\.jpg"):
        extract_dataset("tiny", tmp_path, tmp_path / "o", replace(ULTRAFAST, flow_scale=1.0), progress=False)
    with pytest.raises(InputError, match="003.jpg"):
        read_frame(tmp_path / "tiny" / "testing" / "frames" / "02" / "003.jpg", "02")


def test_box_outside_frame_warns_once_with_count(tmp_path):
    make_dataset(tmp_path)
    p = tmp_path / "tiny" / "tiny_bboxes_train.npy"
    arr = np.load(p, allow_pickle=True)
    arr[1] = np.array([[-5, -5, 20, 20], [50, 40, 80, 60]], np.float64)  # both reach outside
    arr[2] = np.array([[70, 50, 90, 60]], np.float64)  # fully outside: clipped, then grown
    np.save(p, arr, allow_pickle=True)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        settings = ExtractSettings(flow="dis_ultrafast", flow_scale=1.0)
        extract_dataset("tiny", tmp_path, tmp_path / "o", settings, splits=("train",), progress=False)
    msgs = [str(w.message) for w in rec if "clipped" in str(w.message)]
    assert len(msgs) == 1 and "3 boxes reached outside" in msgs[0]
    vel = np.load(tmp_path / "o" / "tiny" / "extracted_features" / "train" / "velocity.npy", allow_pickle=True)
    assert vel[1].shape[0] == 2 and vel[2].shape[0] == 1


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """An MJPG .avi of grey frames (OpenCV writes it with no outside codec)."""
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert out.isOpened()
    for f in frames:
        out.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) if f.ndim == 2 else f)
    out.release()
    return path


def moving_shapes(n_frames: int, seed: int) -> list[np.ndarray]:
    """A still textured 128x96 background with a bright 16 px square crossing it."""
    bg = textured(96, 128, seed)
    frames = []
    for t in range(n_frames):
        f = bg.copy()
        f[40:56, 8 + 6 * t : 24 + 6 * t] = 255
        frames.append(f)
    return frames


def test_video_files_without_boxes_go_through_stage_0(tmp_path):
    base = tmp_path / "in" / "cam"
    for folder, lengths in (("training", (12, 9)), ("testing", (10,))):
        (base / folder / "videos").mkdir(parents=True)
        for v, n in enumerate(lengths):
            write_video(base / folder / "videos" / f"{v + 1:02d}.avi", moving_shapes(n, seed=v))
    (base / folder / "videos" / "notes.txt").write_text("not a video")  # ignored: not a video extension
    write_poses(base, {"train": 21, "test": 10})
    rep = extract_dataset("cam", tmp_path / "in", tmp_path / "out", ULTRAFAST, progress=False)
    out = tmp_path / "out" / "cam"
    assert rep["train"]["frames_per_video"] == [12, 9] and rep["train"]["boxes"] == "motion"
    assert rep["train"]["settings"]["boxes"]["split"] is True and rep["test"]["settings"]["boxes"]["split"] is True
    np.testing.assert_array_equal(np.load(out / "train_clip_lengths.npy"), [12, 21])
    np.testing.assert_array_equal(np.load(out / "test_clip_lengths.npy"), [10])
    boxes = np.load(out / "cam_bboxes_train.npy", allow_pickle=True)
    vel = np.load(out / "extracted_features" / "train" / "velocity.npy", allow_pickle=True)
    assert len(boxes) == len(vel) == 21
    moving = [b for b in boxes[1:12] if len(b)]
    assert len(moving) >= 9  # the square is found in (nearly) every frame of the first video
    for b in moving:  # and its box holds the square
        x1, y1, x2, y2 = b[0]
        assert y1 <= 42 and y2 >= 54 and x2 - x1 >= 12
    assert all(len(v) == max(len(b), 1) for v, b in zip(vel, boxes))


def test_rerun_keeps_features_and_warns_only_on_other_settings(tmp_path):
    base = tmp_path / "in" / "cam"
    for folder, n in (("training", 8), ("testing", 6)):
        (base / folder / "videos").mkdir(parents=True)
        write_video(base / folder / "videos" / "01.avi", moving_shapes(n, seed=0))
    write_poses(base, {"train": 8, "test": 6})
    extract_dataset("cam", tmp_path / "in", tmp_path / "out", ULTRAFAST, progress=False)
    with warnings.catch_warnings(record=True) as same:
        warnings.simplefilter("always")
        rep = extract_dataset("cam", tmp_path / "in", tmp_path / "out", ULTRAFAST, progress=False)
    assert rep["train"]["skipped"] and rep["test"]["skipped"]
    assert not [w for w in same if "other settings" in str(w.message)]
    with warnings.catch_warnings(record=True) as other:
        warnings.simplefilter("always")
        extract_dataset("cam", tmp_path / "in", tmp_path / "out", replace(ULTRAFAST, flow="dis_fast"), progress=False)
    msgs = [str(w.message) for w in other if "other settings" in str(w.message)]
    assert len(msgs) == 2 and all("dis_ultrafast" in m and "dis_fast" in m for m in msgs)


def test_grey_footage_stored_as_colour_is_read_as_grey(tmp_path):
    from memfuse.extract.frames import GREY_SPREAD, Video, iter_frames, rgb_from_bgr

    grey = np.random.default_rng(0).integers(0, 256, (48, 64), dtype=np.uint8)
    tinted = np.stack([grey, np.clip(grey.astype(int) + 2, 0, 255).astype(np.uint8), grey], axis=2)  # a codec's tint
    out = rgb_from_bgr(tinted)
    assert out.shape == (48, 64, 3) and (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    colour = tinted.copy()
    colour[:, :, 2] = 255 - grey  # red unrelated to the rest: colour content, kept as colour
    out = rgb_from_bgr(colour)
    np.testing.assert_array_equal(out[..., 0], colour[..., 2])  # BGR -> RGB
    assert (np.abs(out[..., 0].astype(int) - out[..., 1]) > GREY_SPREAD).mean() > 0.5
    # a grey video written by OpenCV as colour comes back with equal channels
    path = write_video(tmp_path / "grey.avi", [grey] * 3)
    frames = list(iter_frames(Video("grey", path=path)))
    assert len(frames) == 3 and all((f[..., 0] == f[..., 1]).all() and (f[..., 1] == f[..., 2]).all() for f in frames)


def test_unreadable_or_empty_video_is_named(tmp_path):
    base = tmp_path / "cam"
    (base / "training" / "videos").mkdir(parents=True)
    (base / "testing" / "videos").mkdir(parents=True)
    bad = base / "training" / "videos" / "01.avi"
    bad.write_bytes(b"this is not a video")
    write_video(base / "testing" / "videos" / "01.avi", moving_shapes(3, 0))
    write_poses(base, {"train": 1, "test": 3})
    with pytest.raises(InputError, match="01.avi"):
        extract_dataset("cam", tmp_path, tmp_path / "out", ULTRAFAST, progress=False)
    assert not (tmp_path / "out" / "cam" / "extracted_features" / "train" / "velocity.npy").exists()


def test_a_split_without_videos_names_both_layouts(tmp_path):
    (tmp_path / "cam" / "training").mkdir(parents=True)
    with pytest.raises(InputError, match="frames/NN/\\*.jpg .* or videos/"):
        extract_dataset("cam", tmp_path, tmp_path / "out", ExtractSettings(workers=1), progress=False)


def test_even_sample_spreads_over_a_stream_of_unknown_length():
    from memfuse.extract.frames import even_sample

    kept, n = even_sample(iter(range(1000)), 50)
    assert n == 1000 and 25 <= len(kept) <= 50 and kept[0] == 0 and kept[-1] >= 900
    assert len(set(np.diff(kept))) == 1  # evenly spaced
    assert even_sample(iter(range(7)), 50) == (list(range(7)), 7)


def test_a_dataset_without_poses_needs_a_pose_model_and_says_so_first(tmp_path):
    make_dataset(tmp_path)
    (tmp_path / "tiny" / "extracted_features" / "test" / "pose.npy").unlink()
    with pytest.raises(InputError, match="test/pose.npy: give --pose-model"):
        extract_dataset("tiny", tmp_path, tmp_path / "o", ExtractSettings(workers=1), progress=False)
    with pytest.raises(InputError, match="pose model .*nope.tflite not found"):
        settings = ExtractSettings(workers=1, pose_model=tmp_path / "nope.tflite")
        extract_dataset("tiny", tmp_path, tmp_path / "o", settings, progress=False)
    assert not (tmp_path / "o" / "tiny" / "extracted_features").exists()


def test_pose_rows_are_coco_keypoints_relative_to_the_box():
    from memfuse.extract.pose import COCO_FROM_BLAZEPOSE, INPUT_SIZE, landmarks_to_pose, roi_transform

    box = np.array([100, 50, 120, 90], np.float32)  # 20 x 40: the crop is a 50 px square around (110, 70)
    m = roi_transform(box)
    assert m[0, 0] == pytest.approx(INPUT_SIZE / 50)
    # the box's top-left and bottom-right corners land where the map says
    for x, y in ((100, 50), (120, 90)):
        u, v = m @ np.array([x, y, 1.0])
        assert (u, v) == pytest.approx(((x - 110) * INPUT_SIZE / 50 + 128, (y - 70) * INPUT_SIZE / 50 + 128))
    landmarks = np.zeros((39, 5), np.float32)
    # landmark j sits at the input pixel of frame point (100 + j, 50 + 2 j)
    for j in range(39):
        landmarks[j, :2] = m @ np.array([100 + j, 50 + 2 * j, 1.0])
    pose = landmarks_to_pose(landmarks, box, m).reshape(17, 2)
    np.testing.assert_allclose(pose, [[j, 2 * j] for j in COCO_FROM_BLAZEPOSE], atol=1e-3)


def test_an_interrupted_extraction_resumes_per_video_and_leaves_no_output(tmp_path, monkeypatch):
    make_dataset(tmp_path / "in")
    real, seen = P.process_video, []

    def dies_on_the_second_video(job):
        seen.append(job.video.name)
        if len(seen) == 2:
            raise KeyboardInterrupt  # as a user's Ctrl-C
        return real(job)

    monkeypatch.setattr(P, "process_video", dies_on_the_second_video)
    train = dict(splits=("train",), progress=False)
    with pytest.raises(KeyboardInterrupt):
        extract_dataset("tiny", tmp_path / "in", tmp_path / "out", ULTRAFAST, **train)
    out = tmp_path / "out" / "tiny" / "extracted_features" / "train"
    # nothing a stage would trust
    assert not (out / "velocity.npy").exists() and not (out / "deep_features.npy").exists()
    seen.clear()
    monkeypatch.setattr(P, "process_video", lambda job: seen.append(job.video.name) or real(job))
    rep = extract_dataset("tiny", tmp_path / "in", tmp_path / "out", ULTRAFAST, **train)
    assert seen == ["02"] and rep["train"]["frames"] == 8  # video 01 was kept from the first run
    assert not (out / ".videos").exists()
    fresh = extract_dataset("tiny", tmp_path / "in", tmp_path / "o2", ULTRAFAST, **train)
    for name in ("velocity.npy", "deep_features.npy"):
        a = np.load(out / name, allow_pickle=True)
        b = np.load(tmp_path / "o2" / "tiny" / "extracted_features" / "train" / name, allow_pickle=True)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert fresh["train"]["frames"] == 8


def test_pose_every_k_frames_reuses_the_last_posed_frame(tmp_path, monkeypatch):
    import memfuse.extract.pose as pose_module

    boxes = make_dataset(tmp_path / "in", n_frames=5)
    for split in ("train", "test"):
        (tmp_path / "in" / "tiny" / "extracted_features" / split / "pose.npy").unlink()
    calls = []

    class CountingPose:  # stands in for BlazePose: row values say which call made them
        def __init__(self, path, threads=1, person_shaped=False):
            pass

        def __call__(self, rgb, boxes):
            calls.append(len(boxes))
            return np.full((len(boxes), 34), len(calls), np.float32)

    monkeypatch.setattr(pose_module, "PoseModel", CountingPose)
    settings = replace(ULTRAFAST, pose_model="fake.tflite", pose_every=2)
    rep = extract_dataset("tiny", tmp_path / "in", tmp_path / "out", settings, splits=("train",), progress=False)
    poses = np.load(tmp_path / "out" / "tiny" / "extracted_features" / "train" / "pose.npy", allow_pickle=True)
    assert len(calls) == 2 * 3  # frames 0, 2, 4 of each of the two videos
    assert len(poses) == 10 and rep["train"]["settings"]["pose"]["every"] == 2
    for video in range(2):
        for t in range(5):
            posed = video * 5 + t - t % 2  # the frame whose poses this one carries
            assert len(poses[video * 5 + t]) == len(boxes["train"][posed])  # that frame's persons, not this one's
            if len(poses[video * 5 + t]):
                assert poses[video * 5 + t][0, 0] == video * 3 + t // 2 + 1
    with pytest.raises(InputError, match="pose_every must be >= 1"):
        extract_dataset("tiny", tmp_path / "in", tmp_path / "o2", replace(settings, pose_every=0), progress=False)


def test_option_lists_of_the_settings_are_the_libraries_own():
    """The settings are checked, and --help lists them, against copies that need no OpenCV."""
    from memfuse.extract.appearance import APPEARANCE_OPTIONS
    from memfuse.extract.clip_vit import INTERPOLATIONS
    from memfuse.extract.velocity import FLOW_FRAMES, FLOW_METHODS

    assert P.FLOW_CHOICES == FLOW_METHODS
    assert P.FLOW_FRAME_CHOICES == FLOW_FRAMES
    assert P.APPEARANCE_CHOICES == APPEARANCE_OPTIONS
    assert P.CLIP_INTERPOLATIONS == tuple(INTERPOLATIONS)


def test_person_shaped_boxes_are_tall_enough_and_taller_than_wide():
    from memfuse.extract.pose import PERSON_MIN_HEIGHT, person_shaped

    boxes = np.array(
        [[0, 0, 10, 30], [0, 0, 40, 30], [5, 5, 9, 5 + PERSON_MIN_HEIGHT - 1], [5, 5, 9, 5 + PERSON_MIN_HEIGHT]]
    )
    np.testing.assert_array_equal(person_shaped(boxes), [True, False, False, True])
    assert person_shaped(np.zeros((0, 4))).shape == (0,)


def test_workers_report_every_frame_to_the_progress_bar(tmp_path):
    base = tmp_path / "in" / "cam" / "training" / "videos"
    base.mkdir(parents=True)
    write_video(base / "01.avi", moving_shapes(P.PROGRESS_EVERY * 2 + 3, seed=0))
    video = list_split_videos(base.parent)[0]
    assert P.expected_frames(video) == P.PROGRESS_EVERY * 2 + 3  # the header's count, for the bar's total
    reported = []
    P.init_worker(ExtractSettings(appearance="hog"), threads=1, frames_done=reported.append)
    job = P.VideoJob(video, boxes=None, flow=FlowConfig("dis_ultrafast"), bins=1, with_pose=False, pose_every=1)
    res = P.process_video(job)
    assert res["frames"] == sum(reported) == P.PROGRESS_EVERY * 2 + 3 and len(reported) == 3
    make_dataset(tmp_path / "f")
    assert P.expected_frames(list_videos(tmp_path / "f" / "tiny" / "training" / "frames")[0]) == 4

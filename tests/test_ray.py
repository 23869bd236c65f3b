"""Stage 0 on Ray (memfuse/distributed.py): the same features as the local pool, a worker
killed mid-video retried with nothing half-written, and one-line errors before any work."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from memfuse import distributed
from memfuse.extract.pipeline import ExtractSettings, extract_dataset
from memfuse.io import InputError

ray = pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-ray.txt (.ci/run installs it)")

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ("velocity.npy", "deep_features.npy", "pose.npy")


def walking_video(path: Path, n_frames: int, seed: int) -> None:
    """An MJPG .avi: a still textured 160x120 background, two bright blocks crossing it."""
    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(cv2.resize(rng.integers(0, 256, (30, 40)).astype(np.uint8), (160, 120)), (0, 0), 1.0)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    for t in range(n_frames):
        f = bg.copy()
        f[30:60, 5 + 5 * t : 17 + 5 * t] = 250
        f[70:100, 150 - 4 * t : 162 - 4 * t] = 20
        out.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    out.release()


def make_videos(root: Path, lengths: dict[str, tuple[int, ...]]) -> None:
    """DATASET ``cams`` of video files without boxes (motion boxes), poses copied."""
    base = root / "cams"
    for split, folder in (("train", "training"), ("test", "testing")):
        (base / folder / "videos").mkdir(parents=True)
        for v, n in enumerate(lengths[split]):
            walking_video(base / folder / "videos" / f"{v + 1:02d}.avi", n, seed=10 * v + len(split))
        (base / "extracted_features" / split).mkdir(parents=True)
        pose = np.empty(sum(lengths[split]), dtype=object)
        pose[:] = [np.zeros((1, 34), np.float32)] * len(pose)
        np.save(base / "extracted_features" / split / "pose.npy", pose, allow_pickle=True)


def assert_same_features(a: Path, b: Path) -> None:
    for split in ("train", "test"):
        for name in FEATURES:
            x = np.load(a / "cams" / "extracted_features" / split / name, allow_pickle=True)
            y = np.load(b / "cams" / "extracted_features" / split / name, allow_pickle=True)
            assert len(x) == len(y) and all(np.array_equal(p, q) for p, q in zip(x, y)), (split, name)
        boxes = [np.load(d / "cams" / f"cams_bboxes_{split}.npy", allow_pickle=True) for d in (a, b)]
        assert all(np.array_equal(p, q) for p, q in zip(*boxes))


@pytest.fixture(scope="module")
def local_ray():
    """One Ray instance in this process (two CPUs) for the module's tests."""
    distributed.connect("local", local_cpus=2)
    yield ray
    ray.shutdown()


def test_ray_features_equal_the_local_pool_and_a_killed_worker_is_retried(tmp_path, local_ray, monkeypatch):
    make_videos(tmp_path / "in", {"train": (14, 11, 9), "test": (12, 8)})
    pool = ExtractSettings(flow="dis_ultrafast", workers=2)
    extract_dataset("cams", tmp_path / "in", tmp_path / "pool", pool, progress=False)
    # the worker on test video 01 SIGKILLs itself at its 5th frame, once; Ray reruns the task
    monkeypatch.setenv(distributed.FAULT_ENV, "01")
    on_ray = ExtractSettings(flow="dis_ultrafast", workers=2, ray="local")
    rep = extract_dataset("cams", tmp_path / "in", tmp_path / "ray", on_ray, progress=False)
    assert rep["test"]["ran_on"] == "ray local" and rep["train"]["frames_per_video"] == [14, 11, 9]
    assert_same_features(tmp_path / "pool", tmp_path / "ray")
    # the kill happened (the first attempt left its marker), and nothing of the attempts is left
    assert not (tmp_path / "ray" / "cams" / "extracted_features" / "test" / ".videos").exists()
    for split in ("train", "test"):
        left = [p.name for p in (tmp_path / "ray" / "cams" / "extracted_features" / split).iterdir()]
        assert not [n for n in left if n.endswith((".tmp", ".pkl"))], left


def test_the_fault_hook_really_kills_the_first_attempt(tmp_path, local_ray, monkeypatch):
    """Without retries the killed worker's video fails, naming it: the retry above was real."""
    make_videos(tmp_path / "in", {"train": (9,), "test": (9,)})
    monkeypatch.setenv(distributed.FAULT_ENV, "01")
    monkeypatch.setattr(distributed, "TASK_RETRIES", 0)
    settings = ExtractSettings(flow="dis_ultrafast", workers=1, ray="local")
    with pytest.raises(InputError, match=r"worker extracting .*01\.avi died 1 times"):
        extract_dataset("cams", tmp_path / "in", tmp_path / "out", settings, splits=("train",), progress=False)
    cache = tmp_path / "out" / "cams" / "extracted_features" / "train" / ".videos"
    assert (cache / ".01.attempted").exists() and not (cache / "01.pkl").exists()


def test_a_video_a_worker_cannot_read_is_named(tmp_path, local_ray):
    from memfuse.extract.frames import Video
    from memfuse.extract.pipeline import VideoCache, VideoJob

    settings = ExtractSettings()
    job = VideoJob(Video("07", None, tmp_path / "nowhere" / "07.avi"), None, settings.flow_config(), 1, False, 1)
    task = ray.remote(distributed.extract_video)
    with pytest.raises(ray.exceptions.RayTaskError) as err:
        ray.get(task.remote(job, settings, str(tmp_path / "cache"), {}, None))
    assert isinstance(err.value.cause, InputError)
    assert "cannot read" in str(err.value.cause) and "shared file system" in str(err.value.cause)
    assert VideoCache(tmp_path / "cache", {}).get("07") is None


def test_an_unreachable_cluster_and_a_missing_ray_are_one_line_before_any_work(tmp_path, monkeypatch):
    make_videos(tmp_path / "in", {"train": (4,), "test": (4,)})
    cmd = [sys.executable, "extract_features.py", "--dataset", "cams", "--data-root", str(tmp_path / "in")]
    cmd += ["--out-root", str(tmp_path / "out"), "--ray", "127.0.0.1:9"]  # port 9: nothing listens
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "127.0.0.1:9: no Ray cluster answers there" in out.stderr
    assert not (tmp_path / "out" / "cams" / "extracted_features").exists()  # no work began
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(InputError, match="pip install -r requirements-ray.txt"):
        distributed.check_address("auto")

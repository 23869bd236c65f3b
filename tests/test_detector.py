"""The detector: fitted by run_all.py on video files, loaded with its checks, scoring as the
batch path does, and detect.py on a file, a simulated stream and an interrupted run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_SCHEDULE = str(ROOT / "config" / "schedules" / "tiny.toml")
SIZE = (128, 96)


def run(args, **kw):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, **kw)


def write_video(path: Path, n: int, speed: int, seed: int) -> None:
    """A grey background with one bright square crossing it at ``speed`` px a frame."""
    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(cv2.resize(rng.integers(0, 256, (24, 32)).astype(np.uint8), SIZE), (0, 0), 1.0)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, SIZE)
    for t in range(n):
        f = bg.copy()
        x = (4 + speed * t) % 100
        f[40:56, x : x + 16] = 255
        out.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    out.release()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A detector fitted by run_all.py on two train videos (boxes from motion, given poses)."""
    tmp = tmp_path_factory.mktemp("detector")
    name = f"detcam{os.getpid()}"  # stage 0 writes into the project's data/NAME: removed at the end
    base = tmp / name
    rng = np.random.default_rng(0)
    for split, folder in (("train", "training"), ("test", "testing")):
        (base / folder / "videos").mkdir(parents=True)
        for v in range(2):
            speed = 8 if split == "test" and v == 1 else 2
            write_video(base / folder / "videos" / f"{v + 1:02d}.avi", 30, speed, seed=0)
        (base / "extracted_features" / split).mkdir(parents=True)
        pose = np.empty(60, dtype=object)
        pose[:] = [rng.normal(10, 3, (1, 34)).astype(np.float32) for _ in range(60)]
        np.save(base / "extracted_features" / split / "pose.npy", pose, allow_pickle=True)
    np.save(base / "frame_labels.npy", np.r_[np.zeros(30), np.ones(30)].astype(np.int64))
    args = ["--dataset", name, "--data-root", str(tmp), "--checkpoint-root", str(tmp / "ckpt")]
    args += ["--results-root", str(tmp / "res"), "--config", TINY_SCHEDULE, "--compare", "none", "--jobs", "1"]
    out = run(["run_all.py", *args, "--memory-size", "16", "--fast-extract", "--no-annotate"])
    try:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        yield tmp, name, out
    finally:
        shutil.rmtree(ROOT / "data" / name, ignore_errors=True)


def test_run_all_leaves_the_detector_and_records_it(fitted):
    tmp, name, out = fitted
    summary = json.loads((tmp / "res" / name / "summary.json").read_text())
    folder = Path(summary["detector"])
    assert folder == tmp / "ckpt" / name / "memfuse" / "detector"
    assert str(folder) in out.stdout
    meta = json.loads((folder / "detector.json").read_text())
    assert meta["stage0"]["settings"]["flow"]["method"] == "dis_balanced"  # --fast-extract's
    assert meta["stage0"]["frame_size"] == list(SIZE)
    assert meta["threshold"]["value"] > 0 and meta["threshold"]["false_alarms_per_hour"] == 1.0
    size = sum(f.stat().st_size for f in folder.iterdir())
    assert size < 2_000_000  # models and calibration, no training features


def test_the_detector_scores_the_test_split_as_the_stages_did(fitted):
    from memfuse.detector import load, load_test_split

    tmp, name, _ = fitted
    det = load(tmp / "ckpt" / name / "memfuse" / "detector")
    scores = det.score(*load_test_split(ROOT / "data", name))
    batch = np.load(tmp / "res" / name / "memfuse" / "scores_raw.npy")
    np.testing.assert_allclose(scores.raw, batch, rtol=1e-4, atol=1e-4)


def test_a_mismatched_or_incomplete_detector_is_refused_in_one_line(fitted, tmp_path):
    from memfuse.detector import DetectorError, load

    tmp, name, _ = fitted
    src = tmp / "ckpt" / name / "memfuse" / "detector"
    bad = tmp_path / "det"
    shutil.copytree(src, bad)
    meta = json.loads((bad / "detector.json").read_text())
    meta["stage0"]["settings"]["boxes"]["threshold"] = 99
    (bad / "detector.json").write_text(json.dumps(meta))
    with pytest.raises(DetectorError, match="motion boxes threshold: detector 99"):
        load(bad)
    meta["version"] = 0
    (bad / "detector.json").write_text(json.dumps(meta))
    with pytest.raises(DetectorError, match="format version 0"):
        load(bad)
    (bad / "weights.pt").unlink()
    with pytest.raises(DetectorError, match="missing weights.pt"):
        load(bad)
    out = run(["detect.py", str(bad), str(tmp / name / "testing" / "videos"), "--out", str(tmp_path / "o")])
    assert out.returncode != 0 and out.stderr.strip().startswith("error:") and len(out.stderr.strip().splitlines()) == 1


def test_detect_on_a_file_writes_rows_video_and_events(fitted, tmp_path):
    tmp, name, _ = fitted
    clip = tmp_path / "fast.avi"
    write_video(clip, 40, 8, seed=0)  # the camera's background, the square at the anomalous speed
    det = tmp / "ckpt" / name / "memfuse" / "detector"
    out = run(["detect.py", str(det), str(clip), "--out", str(tmp_path / "o"), "--false-alarms-per-hour", "50"])
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    rows = list(csvreader(tmp_path / "o" / "fast.csv"))
    assert [int(r["frame"]) for r in rows] == list(range(40))
    assert {"score", "alarm", "raw_score", "app", "vel", "top_box"} <= set(rows[0])
    assert int(rows[20]["objects"]) >= 1  # the motion background found the square
    assert frames_of(tmp_path / "o" / "fast.mp4") == 40
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["sources"][0]["dropped"] == 0  # a file: none dropped
    events = [json.loads(x) for x in (tmp_path / "o" / "events.jsonl").read_text().splitlines()]
    for e in events:
        assert e["source"] == "fast" and e["start_frame"] <= e["peak_frame"] <= e["end_frame"]
        assert e["modality"] in ("classifier", "app", "pose", "vel")


def source_run(det, source, out: Path, where: str, **kw):
    """detect.py's run of one source with the HOG backbone and no pose model."""
    from memfuse.detection import SourceRun, make_extractor
    from memfuse.extract.appearance import make_backbone

    extractor = make_extractor(det, pose_model=None, backbone=make_backbone("hog"), where=where)
    return SourceRun(det, source, out, threshold=det.threshold, extractor=extractor, **kw)


def test_a_stream_simulated_from_a_file_and_an_interrupted_run(fitted, tmp_path):
    from memfuse.detector import load
    from memfuse.sources import expand

    tmp, name, _ = fitted
    clip = tmp_path / "cam.avi"
    write_video(clip, 30, 2, seed=0)
    det = load(tmp / "ckpt" / name / "memfuse" / "detector")
    (source,) = expand([str(clip)], live=True)
    r = source_run(det, source, tmp_path, "cam").run()
    assert r.frames + r.dropped == 30 and r.frames > 0  # every frame scored or counted as dropped
    rows = list(csvreader(tmp_path / "cam.csv"))
    assert len(rows) == r.frames

    class Stops(type(source)):
        def frames(self):
            for t, rgb in super().frames():
                if t == 12:
                    raise KeyboardInterrupt
                yield t, rgb

    (plain,) = expand([str(clip)])
    stops = Stops(plain.name, plain.kind, plain.target)
    run_ = source_run(det, stops, tmp_path / "cut", "cut", batch=5)
    (tmp_path / "cut").mkdir()
    r = run_.run()
    assert r.interrupted and r.frames == 10  # two whole batches; the third was cut before it was scored
    assert len(list(csvreader(tmp_path / "cut" / "cam.csv"))) == 10
    assert frames_of(tmp_path / "cut" / "cam.mp4") == 10  # closed: it plays to its last frame


def test_a_live_source_behind_scores_its_waiting_frames_together_as_one_at_a_time(fitted, tmp_path):
    from memfuse.detection import LIVE_BATCH
    from memfuse.detector import load
    from memfuse.sources import expand

    tmp, name, _ = fitted
    clip = tmp_path / "cam.avi"
    write_video(clip, 20, 2, seed=1)
    det = load(tmp / "ckpt" / name / "memfuse" / "detector")
    (plain,) = expand([str(clip)])
    calls = []

    class Behind(type(plain)):  # a camera that fell behind: frames 0-10 find others waiting
        def frames(self):
            (reader,) = expand([str(clip)])  # the file read in this thread: no frame dropped
            for t, rgb in reader.frames():
                self.waiting = 3 if t <= 10 else 0
                yield t, rgb

    def scores(source, out: Path) -> list[str]:
        out.mkdir()
        run_ = source_run(det, source, out, "cam", batch=1)
        run_._score = lambda pending, f=run_._score: (calls.append(len(pending)), f(pending))
        run_.run()
        return [row["raw_score"] for row in csvreader(out / "cam.csv")]

    one_by_one = scores(plain, tmp_path / "plain")
    assert calls == [1] * 20
    calls.clear()
    behind = Behind(plain.name, plain.kind, plain.target, live=True)
    # the same scores, in fewer model calls: equal up to the order of a batch's float sums,
    # which can move a score written with 3 decimals by one in its last place
    np.testing.assert_allclose(
        np.asarray(scores(behind, tmp_path / "behind"), float), np.asarray(one_by_one, float), rtol=0, atol=2e-3
    )
    assert calls == [LIVE_BATCH, 4] + [1] * 8  # frames 0-7, then 8-11 (11 finds none waiting), then one each


def csvreader(path):
    import csv

    with open(path) as fh:
        yield from csv.DictReader(fh)


def frames_of(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def test_detect_on_ray_scores_each_source_as_the_local_run(fitted, tmp_path):
    """--ray local: one actor per source, in parallel; the same rows as one after another,
    each source's events gathered into events.jsonl."""
    pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-ray.txt")
    tmp, name, _ = fitted
    clips = tmp_path / "clips"
    clips.mkdir()
    write_video(clips / "a.avi", 24, 8, seed=0)
    write_video(clips / "b.avi", 20, 2, seed=0)
    det = str(tmp / "ckpt" / name / "memfuse" / "detector")
    common = ["--no-video", "--false-alarms-per-hour", "50"]
    local = run(["detect.py", det, str(clips), "--out", str(tmp_path / "local"), *common])
    assert local.returncode == 0, local.stdout[-2000:] + local.stderr[-2000:]
    far = run(["detect.py", det, str(clips), "--out", str(tmp_path / "ray"), "--ray", "local", *common])
    assert far.returncode == 0, far.stdout[-2000:] + far.stderr[-2000:]
    assert "one actor per source" in far.stdout
    for clip in ("a", "b"):
        a, b = (list(csvreader(tmp_path / d / f"{clip}.csv")) for d in ("local", "ray"))
        assert len(a) == len(b) > 0 and [r["score"] for r in a] == [r["score"] for r in b]
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert [s["name"] for s in summary["sources"]] == ["a", "b"] and all(s["node"] for s in summary["sources"])
    lines = lambda d: sorted((tmp_path / d / "events.jsonl").read_text().splitlines())  # noqa: E731
    assert lines("ray") == lines("local")
    assert all((tmp_path / "ray" / f"{c}.events.jsonl").exists() for c in ("a", "b"))
    unreachable = run(["detect.py", det, str(clips), "--out", str(tmp_path / "x"), "--ray", "127.0.0.1:9"])
    assert unreachable.returncode != 0 and "127.0.0.1:9" in unreachable.stderr
    assert len(unreachable.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()

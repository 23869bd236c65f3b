"""The speed-and-scale benchmark: its data maker, the chunked/mini-batch library paths it
times, and one tiny end-to-end run."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import run as B

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- data maker
@pytest.mark.parametrize("name", sorted(B.SCALES))
def test_count_plan_hits_totals_and_n_max(name):
    """The per-frame count plan of every named scale (only (F,) arrays are allocated)."""
    s = B.SCALES[name]
    rng = np.random.default_rng(0)
    for frames, objects, persons in (
        (s.train_frames, s.train_objects, s.train_persons),
        (s.test_frames, s.test_objects, s.test_persons),
    ):
        obj = B.plan_counts(frames, objects, s.n_max, 1, rng)
        per = B.plan_counts(frames, persons, s.n_max, 0, rng)
        assert len(obj) == frames and obj.sum() == objects and obj.min() >= 1 and obj.max() == s.n_max
        assert len(per) == frames and per.sum() == persons and per.min() >= 0 and per.max() == s.n_max
        assert obj.std() > 0  # counts vary between frames


def test_count_plan_rejects_impossible_totals():
    with pytest.raises(ValueError):
        B.plan_counts(10, 200, 5, 1, np.random.default_rng(0))


def test_tiny_data_has_the_claimed_counts():
    s = B.SCALES["tiny"]
    d = B.make_data(s, seed=1)
    for split, frames, objects, persons in (
        ("train", s.train_frames, s.train_objects, s.train_persons),
        ("test", s.test_frames, s.test_objects, s.test_persons),
    ):
        sp = d[split]
        assert sp.n_frames == sp.vel.n_frames == sp.pose.n_frames == frames
        assert sp.app.values.shape == (objects, 512) and sp.app.values.dtype == np.float32
        assert sp.vel.values.shape == (objects, s.velocity_bins)
        assert sp.pose.values.shape == (persons, 34)
        assert np.array_equal(sp.app.offsets, sp.vel.offsets)
        assert sp.app.counts.max() == s.n_max and sp.app.counts.min() >= 1
    assert d["test_ends"][-1] == s.test_frames and len(d["test_ends"]) == s.videos[1]
    assert len(d["labels"]) == s.test_frames


def test_flop_count_of_first_layer():
    # 10 frames, N_max 2: inputs 2 x 204 = 408 -> 256; 2*408*256 per sample, 4 passes, x3
    assert B.fusion_flops_first_layer(10, 2) == 2 * 408 * 256 * 4 * 3 * 10
    assert B.fusion_flops_total(10, 2) > B.fusion_flops_first_layer(10, 2)


# ---------------------------------------------------------------- end to end
def test_bench_tiny_end_to_end(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [
            sys.executable,
            "bench/run.py",
            "--scale",
            "tiny",
            "--threads",
            "1",
            "--ae-epochs",
            "2",
            "--memory-epochs",
            "2",
            "--loop-sample",
            "300",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert set(res["stages"]) == set(B.STAGES)
    s = B.SCALES["tiny"]
    assert res["data"]["train"]["objects"] == s.train_objects and res["data"]["test"]["frames"] == s.test_frames
    assert res["stages"]["fusion"]["s_per_epoch"] > 0 and res["stages"]["matmul"]["square_gflops"] > 0
    assert res["stages"]["kmeans"]["app"]["sklearn_s"] is not None
    assert res["extrapolated_pipeline_s"] > 0
    assert "peak RSS" in r.stdout


def test_bench_stage_subset_runs_alone(tmp_path):
    """A stage whose inputs come from a stage not run gets stand-ins."""
    out = tmp_path / "b.json"
    B.main(["--scale", "tiny", "--stages", "fusion", "--fusion-epochs", "1", "--threads", "1", "--out", str(out)])
    res = json.loads(out.read_text())
    assert list(res["stages"]) == ["fusion"] and "extrapolated_pipeline_s" not in res


def test_cuda_check_without_cuda_exits_cleanly_and_dry_run_passes(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs the real check (minutes), not this test")
    r = subprocess.run([sys.executable, "bench/cuda_check.py"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "no CUDA device" in r.stdout
    from bench import cuda_check

    out = tmp_path / "cc.json"
    assert cuda_check.main(["--allow-cpu", "--epochs", "1", "--threads", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["failed"] == [] and report["agreement"]["fusion_score_max_abs"]["ok"]


def test_per_object_ablation_is_the_frame_score_for_one_object_and_lower_when_sources_split():
    from bench.score_terms import per_object_frame_score
    from memfuse import scoring as S

    rng = np.random.default_rng(0)
    terms = ("classifier", "app_knn", "app_rec", "pose", "vel")
    box = ("app_knn", "app_rec", "vel")
    reference = {t: rng.gamma(2.0, 1.0, 400) for t in terms}
    objects = {t: rng.gamma(2.0, 1.0, (60, 3)) for t in box}
    padded = np.zeros((60, 3), bool)
    padded[:, 1:] = True  # one object a frame: its values are the frame's
    test = {t: objects[t][:, 0] for t in box} | {t: rng.gamma(2.0, 1.0, 60) for t in ("classifier", "pose")}
    for how in ("z", "tail"):
        np.testing.assert_allclose(
            per_object_frame_score(reference, test, objects, padded, terms, how),
            S.combine(reference, test, terms, how)[0],
            atol=1e-5,  # object_scores are float32
        )
    # two objects: the odd-looking one is slow, the fast one looks ordinary
    objects = {"app_knn": np.array([[9.0, 1.0]]), "app_rec": np.array([[9.0, 1.0]]), "vel": np.array([[1.0, 9.0]])}
    frame = {t: objects[t].max(axis=1) for t in box} | {"classifier": np.array([2.0]), "pose": np.array([2.0])}
    split = per_object_frame_score(reference, frame, objects, np.zeros((1, 2), bool), terms)
    assert split[0] < S.combine(reference, frame, terms, "z")[0]

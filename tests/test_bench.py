"""The speed-and-scale benchmark: its data maker, the chunked/mini-batch library paths it
times, and one tiny end-to-end run."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import run as B  # noqa: E402
from memfuse.fusion import KeepBest, PaddedSplit, holdout_videos, pseudo_label_validation, score, take_frames, train_fusion, training_batch  # noqa: E402
from memfuse.metrics import micro_auc  # noqa: E402
from memfuse.models import AttentionFusion  # noqa: E402
from memfuse.pseudo import generate  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: one torch thread is faster (and on a busy machine much faster)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------- data maker
@pytest.mark.parametrize("name", sorted(B.SCALES))
def test_count_plan_hits_totals_and_n_max(name):
    """The per-frame count plan of every named scale (only (F,) arrays are allocated)."""
    s = B.SCALES[name]
    rng = np.random.default_rng(0)
    for frames, objects, persons in ((s.train_frames, s.train_objects, s.train_persons), (s.test_frames, s.test_objects, s.test_persons)):
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
    for split, frames, objects, persons in (("train", s.train_frames, s.train_objects, s.train_persons),
                                            ("test", s.test_frames, s.test_objects, s.test_persons)):
        sp = d[split]
        assert sp.n_frames == sp.velocity.n_frames == sp.pose.n_frames == frames
        assert sp.appearance.values.shape == (objects, 512) and sp.appearance.values.dtype == np.float32
        assert sp.velocity.values.shape == (objects, s.velocity_bins)
        assert sp.pose.values.shape == (persons, 34)
        assert np.array_equal(sp.appearance.offsets, sp.velocity.offsets)
        assert sp.appearance.counts.max() == s.n_max and sp.appearance.counts.min() >= 1
    assert d["test_ends"][-1] == s.test_frames and len(d["test_ends"]) == s.videos[1]
    assert len(d["labels"]) == s.test_frames


def test_flop_count_of_first_layer():
    # 10 frames, N_max 2: inputs 2 x 204 = 408 -> 256; 2*408*256 per sample, 4 passes, x3
    assert B.fusion_flops_first_layer(10, 2) == 2 * 408 * 256 * 4 * 3 * 10
    assert B.fusion_flops_total(10, 2) > B.fusion_flops_first_layer(10, 2)


# ---------------------------------------------------------------- chunked == one-shot
def test_pseudo_generation_chunked_equals_one_shot():
    rng = np.random.default_rng(0)
    q, items = rng.normal(size=(1000, 34)).astype(np.float32), rng.normal(size=(50, 34)).astype(np.float32)
    small, big = generate(q, items, chunk=37), generate(q, items, chunk=1_000_000)
    np.testing.assert_allclose(small.normal, big.normal, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(small.anomaly, big.anomaly, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(small.indices, big.indices)


def toy_padded(n_frames=160, n_max=5, seed=0, separable=False):
    """Padded toy split. With ``separable``, anomalous features are shifted far away."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, n_max + 1, n_frames)
    mask = np.arange(n_max)[None, :] >= counts[:, None]

    def feats(shift=0.0):
        x = rng.normal(0, 1, (n_frames, n_max, 34)).astype(np.float32) * 0.3 + shift
        x[mask] = 0
        return x

    vel = np.where(mask, 0, np.abs(rng.normal(1, 0.1, (n_frames, n_max)))).astype(np.float32)
    shift = 3.0 if separable else 0.0
    return PaddedSplit(app=feats(), pose=feats(), vel=vel, app_mask=mask, pose_mask=mask.copy(),
                       app_anomaly=feats(shift), pose_anomaly=feats(-shift))


def test_fusion_scoring_batched_equals_one_shot():
    torch.manual_seed(0)
    split = toy_padded(n_frames=103)
    model = AttentionFusion(5)
    a = score(model, split, torch.device("cpu"), batch_size=7)
    b = score(model, split, torch.device("cpu"), batch_size=100_000)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_minibatch_fusion_training_learns_a_separable_toy():
    torch.manual_seed(0)
    train = toy_padded(n_frames=256, separable=True, seed=1)
    model = AttentionFusion(5)
    hist = train_fusion(model, train, epochs=8, lr=1e-3, batch_size=64, device=torch.device("cpu"), seed=0)
    assert hist[-1]["loss"] < hist[0]["loss"]
    # test set: normal frames (the pseudo-normal inputs) vs anomalous ones (both shifted)
    test = toy_padded(n_frames=200, separable=True, seed=2)
    mixed = PaddedSplit(app=np.concatenate([test.app[:100], test.app_anomaly[100:]]),
                        pose=np.concatenate([test.pose[:100], test.pose_anomaly[100:]]), vel=test.vel,
                        app_mask=test.app_mask, pose_mask=test.pose_mask)
    labels = np.r_[np.zeros(100), np.ones(100)]
    assert micro_auc(score(model, mixed, torch.device("cpu")), labels) > 0.9


def test_holdout_takes_whole_videos_from_the_end():
    fit, val = holdout_videos(np.array([10, 25, 40]), 1)
    assert (fit, val) == (slice(0, 25), slice(25, 40))
    split = take_frames(toy_padded(n_frames=40), val)
    assert split.n_frames == 15 and split.app_anomaly.shape[0] == 15
    for bad in (0, 3):
        with pytest.raises(ValueError, match="hold out 1 to 2"):
            holdout_videos(np.array([10, 25, 40]), bad)


def test_pseudo_label_validation_is_the_training_objective_without_dropout():
    torch.manual_seed(0)
    split = toy_padded(n_frames=50, separable=True, seed=3)
    model = AttentionFusion(5)
    got = pseudo_label_validation(model, split, torch.device("cpu"), batch_size=7)
    model.eval()
    with torch.no_grad():
        app, pose, vel, masks, y = training_batch(split, np.arange(50), torch.device("cpu"))
        want = torch.nn.functional.binary_cross_entropy_with_logits(model(app, pose, vel, masks), y, reduction="sum").item() / 50
    assert got["val_loss"] == pytest.approx(want, rel=1e-5)
    # trained on other frames of the same separable toy, the held-out pseudo labels separate
    train_fusion(model, toy_padded(n_frames=256, separable=True, seed=1), epochs=8, lr=1e-3, batch_size=64, device=torch.device("cpu"), seed=0)
    after = pseudo_label_validation(model, split, torch.device("cpu"))
    assert after["val_loss"] < got["val_loss"] and after["val_auc"] > 0.9


def test_keep_best_restores_the_lowest_loss_weights_and_stops_on_patience():
    model = torch.nn.Linear(2, 1)
    keeper = KeepBest(patience=2)
    stops = []
    for epoch, loss in enumerate([3.0, 2.0, 2.5, 2.6], start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        stops.append(keeper.update(epoch, loss, model))
    assert stops == [False, False, False, True]
    assert keeper.restore(model) == 2 and torch.all(model.weight == 2.0)
    assert not any(KeepBest(patience=0).update(e, 1.0, model) for e in range(5))


def test_training_stops_when_the_epoch_callback_says_so():
    model = AttentionFusion(5)
    hist = train_fusion(model, toy_padded(n_frames=20), epochs=10, lr=1e-3, batch_size=0, device=torch.device("cpu"), seed=0,
                        on_epoch=lambda e, m: {"stop": e == 3})
    assert [h["epoch"] for h in hist] == [1, 2, 3] and "stop" not in hist[-1]


# ---------------------------------------------------------------- end to end
def test_bench_tiny_end_to_end(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "bench/run.py", "--scale", "tiny", "--threads", "1", "--ae-epochs", "2", "--memory-epochs", "2",
                        "--loop-sample", "300", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert set(res["stages"]) == set(B.STAGES)
    s = B.SCALES["tiny"]
    assert res["data"]["train"]["objects"] == s.train_objects and res["data"]["test"]["frames"] == s.test_frames
    assert res["stages"]["fusion"]["s_per_epoch"] > 0 and res["stages"]["matmul"]["square_gflops"] > 0
    assert res["stages"]["kmeans"]["appearance"]["sklearn_s"] is not None
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

"""memfuse.stages and memfuse.pipeline: memory training and the checks between stages."""

import numpy as np
import pytest
import torch


def test_memory_training_lowers_loss():
    from memfuse.stages import train_memory

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (4, 6)).astype(np.float32)
    q = (centres[rng.integers(4, size=400)] + rng.normal(0, 0.05, (400, 6))).astype(np.float32)
    _, hist = train_memory(
        q,
        rng.normal(0, 1, (16, 6)).astype(np.float32),
        epochs=40,
        lr=1e-2,
        batch_size=128,
        weights=(5, 1, 1),
        top_k=5,
        margin=1.0,
        cosine_t_max=0,
        stale_step=False,
        device=torch.device("cpu"),
        seed=0,
    )
    assert hist[-1]["total"] < 0.5 * hist[0]["total"]


def test_check_codes_rejects_collapsed_or_nan_codes_and_passes_spread_ones():
    from memfuse.io import InputError
    from memfuse.stages import check_codes

    rng = np.random.default_rng(0)
    check_codes(rng.normal(0, 0.1, (100, 34)).astype(np.float32), "ok")
    collapsed = np.tile(rng.normal(0, 0.1, (1, 34)).astype(np.float32), (100, 1))
    with pytest.raises(InputError, match="same code"):
        check_codes(collapsed, "ped2 train appearance")
    nan = rng.normal(0, 0.1, (100, 34)).astype(np.float32)
    nan[5, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        check_codes(nan, "ped2 train appearance")


def test_a_stage_killed_after_it_started_is_never_up_to_date(tmp_path, monkeypatch):
    """A stage drops its own record when it starts and writes it when it finishes: outputs
    left by a kill (an intermediate memory checkpoint) with an old stamp are rerun. A
    global edited at the script's top since its run reruns it too."""
    import json

    import train
    from memfuse.pipeline import StageRun, check_inputs, provenance_path
    from run_all import resolved_settings, up_to_date

    ckpt = tmp_path / "ckpt"
    (ckpt / ".stamps").mkdir(parents=True)
    (ckpt / "memory_app.pt").write_bytes(b"weights")
    (ckpt / ".stamps" / "train.py.json").write_text(json.dumps({"argv": ["--memory-epochs", "3"], "inputs": {}}))
    settings = resolved_settings("train.py", ["--memory-epochs", "3"])
    StageRun("train.py", settings, "cpu", ckpt).finish()
    assert up_to_date("train.py", ckpt, ["--memory-epochs", "3"], set(), {})
    monkeypatch.setattr(train, "MARGIN", train.MARGIN * 2)  # the global at the script's top, edited
    assert not up_to_date("train.py", ckpt, ["--memory-epochs", "3"], set(), {})
    monkeypatch.undo()
    assert not up_to_date("train.py", ckpt, ["--memory-epochs", "4"], set(), {})  # other flags
    assert not up_to_date("train.py", ckpt, ["--memory-epochs", "3"], {"cluster.py"}, {})  # an input stage reran
    check_inputs(ckpt, "train.py", settings)  # the stage starts ... and then the run was killed
    assert not provenance_path(ckpt, "train.py").exists()
    assert not up_to_date("train.py", ckpt, ["--memory-epochs", "3"], set(), {})

"""End to end: a tiny synthetic dataset through run_all.py, and stage-level errors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memfuse.synthetic import SyntheticSpec, make_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY_SCHEDULE = str(ROOT / "config" / "schedules" / "tiny.toml")
TINY = SyntheticSpec(train_videos=3, test_videos=3, min_frames=60, max_frames=80, max_objects=6, seed=1)


def run(args, cwd=ROOT, **env):
    environ = {**os.environ, **env}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=environ)


def stage_args(tmp, ckpt, res=None):
    """The flags of a stage script run on the pipeline fixture's data, at the tiny schedule."""
    folders = ["--data-root", str(tmp / "data"), "--checkpoint-root", str(ckpt)]
    return folders + (["--results-root", str(res)] if res else []) + ["--config", TINY_SCHEDULE, "--device", "cpu"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    make_dataset(tmp / "data", "synthetic", TINY)
    args = [
        "run_all.py",
        "--data-root",
        str(tmp / "data"),
        "--checkpoint-root",
        str(tmp / "ckpt"),
        "--results-root",
        str(tmp / "results"),
        "--config",
        TINY_SCHEDULE,
        "--device",
        "cpu",
    ]
    first = run(args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return tmp, args, first


def test_run_all_writes_results(pipeline):
    tmp, _, first = pipeline
    n_test = int(np.load(tmp / "data" / "synthetic" / "test_clip_lengths.npy")[-1])
    for recipe, terms in (("memfuse", ["classifier", "app_rec", "app_knn", "pose", "vel"]), ("paper", ["classifier"])):
        metrics = json.loads((tmp / "results" / "synthetic" / recipe / "metrics.json").read_text())
        scores = np.load(tmp / "results" / "synthetic" / recipe / "scores.npy")
        assert metrics["n_test_frames"] == n_test == len(scores)
        for key in ("micro_auc", "macro_auc", "eer", "oracle_micro_auc"):
            assert 0.0 <= metrics[key] <= 1.0
        assert "fixed" in metrics["protocol"]["model_selection"]
        assert metrics["settings"]["RECIPE"] == recipe and metrics["score_terms"] == terms
        # app_knn needs calibrate.py's cross-fitting, which the paper's recipe does not run
        measured = {"classifier", "app", "app_rec", "pose", "vel", "vel_rel"} | (
            {"app_knn"} if recipe == "memfuse" else set()
        )
        assert set(metrics["term_micro_auc"]) == measured
        # the synthetic data has no boxes file: the speed relative to box height is the speed
        assert metrics["term_micro_auc"]["vel_rel"] == metrics["term_micro_auc"]["vel"]
        # memfuse calibrates the memorised terms on videos their models never saw; paper has no such stage
        held_out = metrics["calibration"]["memorised_terms"].startswith("out-of-fold")
        assert held_out is (recipe == "memfuse")
        # the settings of every stage that made its inputs, as they were
        assert len(metrics["stage_settings"]) == 9 and metrics["stage_settings"]["train_pose.py"]["RECIPE"] == recipe
        assert metrics["stage_settings"]["AE_encoder.py"]["STANDARDISE"] is (recipe == "memfuse")
        # the padded inputs follow the data: N_max is the largest object count in any frame
        meta = json.loads((tmp / "ckpt" / "synthetic" / recipe / "padded" / "meta.json").read_text())
        assert meta["n_max"] == TINY.max_objects or meta["n_max"] <= TINY.max_objects + 1
    summary = json.loads((tmp / "results" / "synthetic" / "summary.json").read_text())
    assert set(summary["recipes"]) == {"memfuse", "paper"} and "micro_auc" in summary["baseline"]
    assert {"memfuse/AE_encoder.py", "paper/attention_fusion.py", "baseline.py"} <= set(summary["stage_seconds"])
    lines = first.stdout.splitlines()
    assert any(line.split()[:1] == ["memfuse"] for line in lines) and any(
        line.split()[:1] == ["paper"] for line in lines
    )
    assert (tmp / "results" / "synthetic" / "roc.png").exists()
    ends = np.load(tmp / "data" / "synthetic" / "test_clip_lengths.npy")
    first_video = (tmp / "results" / "synthetic" / "videos" / "video_01.csv").read_text().splitlines()
    assert first_video[0] == "frame,memfuse,paper,AI-VAD baseline,anomalous" and len(first_video) == 1 + ends[0]
    assert len(list((tmp / "results" / "synthetic" / "videos").glob("*.csv"))) == len(ends)


SCRIPTS_IN_ORDER = (
    "AE_encoder",
    "cluster",
    "cluster_pose",
    "train",
    "train_pose",
    "Pseudo_generators",
    "Pseudo_generators_pose",
    "calibrate",
    "padding_mask",
    "attention_fusion",
)


def test_the_scripts_in_order_give_run_alls_figure(pipeline, tmp_path):
    """The ten stage scripts run one after the other from the shell, with the settings at
    their tops, score exactly as run_all.py does (same recipe, seed and threads)."""
    tmp, _, _ = pipeline
    threads = str(max(1, (os.cpu_count() or 1) // 2))  # run_all ran two recipes side by side, the threads shared
    for script in SCRIPTS_IN_ORDER:
        res = tmp_path / "res" if script == "attention_fusion" else None
        out = run(
            [f"{script}.py", *stage_args(tmp, tmp_path / "ckpt", res)], OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads
        )
        assert out.returncode == 0, script + out.stderr[-2000:]
    ours = json.loads((tmp_path / "res" / "synthetic" / "memfuse" / "metrics.json").read_text())
    theirs = json.loads((tmp / "results" / "synthetic" / "memfuse" / "metrics.json").read_text())
    assert ours["micro_auc"] == theirs["micro_auc"] and ours["term_micro_auc"] == theirs["term_micro_auc"]
    np.testing.assert_array_equal(
        np.load(tmp_path / "res" / "synthetic" / "memfuse" / "scores.npy"),
        np.load(tmp / "results" / "synthetic" / "memfuse" / "scores.npy"),
    )


def test_editing_a_global_at_the_top_of_a_script_changes_what_runs(pipeline, tmp_path):
    """A copy of attention_fusion.py with HIDDEN edited at its top trains that width and
    records it, with no flag."""
    import torch

    tmp, _, _ = pipeline
    source = (ROOT / "attention_fusion.py").read_text()
    assert "\nHIDDEN = 64 " in source
    (tmp_path / "attention_fusion.py").write_text(source.replace("\nHIDDEN = 64 ", "\nHIDDEN = 24 ", 1))
    shutil.copytree(tmp / "ckpt", tmp_path / "ckpt")
    script = str(tmp_path / "attention_fusion.py")
    out = run([script, *stage_args(tmp, tmp_path / "ckpt", tmp_path / "res")], cwd=tmp_path, PYTHONPATH=str(ROOT))
    assert out.returncode == 0, out.stderr[-2000:]
    metrics = json.loads((tmp_path / "res" / "synthetic" / "memfuse" / "metrics.json").read_text())
    state = torch.load(tmp_path / "ckpt" / "synthetic" / "memfuse" / "fusion.pt", weights_only=False)
    assert metrics["settings"]["HIDDEN"] == 24 and state["state_dict"]["classifier.0.weight"].shape[0] == 24


def test_second_run_skips_finished_stages(pipeline):
    tmp, args, _ = pipeline
    again = run(args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("up to date, skipped") == 20  # 10 stages, two recipes
    summary = json.loads((tmp / "results" / "synthetic" / "summary.json").read_text())
    assert len(summary["stages_skipped"]) == 20 and all(
        summary["stage_seconds"][s] > 0 for s in summary["stages_skipped"]
    )


def test_stage_refuses_inputs_of_another_recipe(pipeline, tmp_path):
    tmp, _, _ = pipeline
    ckpt = tmp_path / "ckpt"
    shutil.copytree(
        tmp / "ckpt" / "synthetic" / "paper", ckpt / "synthetic" / "memfuse"
    )  # paper's outputs where memfuse's belong
    out = run(["padding_mask.py", "--data-root", str(tmp / "data"), "--checkpoint-root", str(ckpt)])
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "RECIPE='paper'" in out.stderr and "RECIPE='memfuse'" in out.stderr and "Pseudo_generators.py" in out.stderr
    # a setting of the same recipe flipped on one stage is caught too
    out = run(
        [
            "train_pose.py",
            "--recipe",
            "paper",
            "--standardise",
            "--memory-epochs",
            "1",
            "--data-root",
            str(tmp / "data"),
            "--checkpoint-root",
            str(tmp / "ckpt"),
        ]
    )
    assert out.returncode != 0 and "STANDARDISE=False" in out.stderr and "STANDARDISE=True" in out.stderr


def test_unknown_recipe_lists_the_known_ones():
    for script in ("run_all.py", "train.py"):
        out = run([script, "--recipe", "papr"])
        assert out.returncode != 0 and "Traceback" not in out.stderr
        assert all(name in out.stderr for name in ("memfuse", "paper", "reference"))


def test_fusion_with_label_free_validation_selects_and_reports_the_epoch(pipeline):
    tmp, args, _ = pipeline
    common = [
        "--data-root",
        str(tmp / "data"),
        "--checkpoint-root",
        str(tmp / "ckpt_val"),
        "--results-root",
        str(tmp / "results"),
    ]
    shutil.copytree(tmp / "ckpt", tmp / "ckpt_val")  # the run_all fixture's checkpoints stay as they were
    out = run(
        [
            "attention_fusion.py",
            *common,
            "--results-name",
            "val",
            "--fusion-epochs",
            "4",
            "--eval-every",
            "1",
            "--val-videos",
            "1",
            "--stop-on-validation",
            "--device",
            "cpu",
        ]
    )
    assert out.returncode == 0, out.stderr[-2000:]
    res = tmp / "results" / "val" / "memfuse"
    metrics = json.loads((res / "metrics.json").read_text())
    v = metrics["validation"]
    assert v["videos"] == 1 and 1 <= v["best_epoch"] <= 4 and "label-free" in metrics["protocol"]["model_selection"]
    assert 0.0 <= v["test_micro_auc_at_best_epoch"] <= 1.0 and "spearman_val_loss_vs_test_auc" in v
    assert metrics["n_train_frames"] + v["frames"] == int(
        np.load(tmp / "data" / "synthetic" / "train_clip_lengths.npy")[-1]
    )
    assert (res / "validation.png").exists()
    history = json.loads((res / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4] and all(
        "val_loss" in h and "test_micro_auc" in h for h in history
    )
    bad = run(
        ["attention_fusion.py", *common, "--results-name", "val2", "--fusion-epochs", "1", "--stop-on-validation"]
    )
    assert bad.returncode != 0 and "--val-videos" in bad.stderr and "Traceback" not in bad.stderr


def test_fusion_seeds_retrains_the_runs_own_head_and_scores_others_beside_it(pipeline, tmp_path):
    """bench/fusion_seeds.py at the run's own seed retrains the run's classifier: the same
    figures as the run (same settings, seed and threads); another seed gives a head of its own."""
    tmp, _, _ = pipeline
    threads = str(max(1, (os.cpu_count() or 1) // 2))  # as run_all ran its two recipes
    out = run(
        ["bench/fusion_seeds.py", str(tmp / "results" / "synthetic" / "memfuse"), "--seeds", "0,7"]
        + ["--threads", threads, "--json", str(tmp_path / "seeds.json")],
        OMP_NUM_THREADS=threads,
        MKL_NUM_THREADS=threads,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads((tmp_path / "seeds.json").read_text())["rows"]
    metrics = json.loads((tmp / "results" / "synthetic" / "memfuse" / "metrics.json").read_text())
    own, other = rows["head seed 0"], rows["head seed 7"]
    assert own["frame_score"] == pytest.approx(metrics["micro_auc"], abs=1e-9)
    assert own["classifier"] == pytest.approx(rows["the run (seed 0)"]["classifier"], abs=1e-9)
    assert other["classifier"] != own["classifier"]
    assert set(rows) == {"the run (seed 0)", "head seed 0", "head seed 7", "ensemble of the 2 (mean logit)"}
    missing = run(["bench/fusion_seeds.py", str(tmp_path / "nowhere")])
    assert missing.returncode != 0 and "run_all.py" in missing.stderr and "Traceback" not in missing.stderr


def test_validation_diagnostics_report_the_rule_against_the_test_curve():
    from attention_fusion import validation_diagnostics

    history = [{"epoch": e, "loss": 1.0} for e in range(1, 31)]
    for e, (vl, auc) in zip((10, 20, 30), ((0.5, 0.7), (0.3, 0.9), (0.4, 0.8))):
        history[e - 1].update(val_loss=vl, test_micro_auc=auc)
    d = validation_diagnostics(history, best_epoch=20)
    assert d["test_micro_auc_at_best_epoch"] == 0.9
    assert d["spearman_val_loss_vs_test_auc"] == pytest.approx(-1.0)


def test_stage_without_input_names_the_stage_to_run(tmp_path):
    make_dataset(tmp_path / "data", "synthetic", TINY)
    out = run(["cluster.py", "--data-root", str(tmp_path / "data"), "--checkpoint-root", str(tmp_path / "ckpt")])
    assert out.returncode != 0
    assert "app_train.npy" in out.stderr and "python AE_encoder.py" in out.stderr
    assert "Traceback" not in out.stderr


def test_without_two_classes_of_labels_scores_are_written_with_no_auc(tmp_path):
    base = make_dataset(tmp_path / "data", "synthetic", TINY)
    labels = next(base.glob("frame_labels*.npy"))
    np.save(labels, np.zeros_like(np.load(labels)))
    common = [
        "--data-root",
        str(tmp_path / "data"),
        "--checkpoint-root",
        str(tmp_path / "ckpt"),
        "--results-root",
        str(tmp_path / "res"),
        "--config",
        TINY_SCHEDULE,
        "--compare",
        "none",
    ]
    out = run(["run_all.py", *common])
    assert out.returncode == 0, out.stderr[-2000:]
    assert "every test frame is labelled 0" in out.stdout and "Traceback" not in out.stderr
    res = tmp_path / "res" / "synthetic"
    summary = json.loads((res / "summary.json").read_text())
    assert summary["recipes"]["memfuse"]["micro_auc"] is None and "labelled 0" in summary["no_auc"]
    assert np.isfinite(np.load(res / "memfuse" / "scores.npy")).all() and (res / "baseline_scores.npy").exists()
    assert not (res / "roc.png").exists() and list((res / "videos").glob("*.png"))
    labels.unlink()  # no label file at all: the same, and nothing retrains
    out = run(["run_all.py", *common])
    assert out.returncode == 0 and "no test labels" in out.stdout and "up to date" in out.stdout


def test_run_all_rejects_bad_labels_before_training(tmp_path):
    base = make_dataset(tmp_path / "data", "synthetic", TINY)
    np.save(base / "frame_labels.npy", np.zeros(7))
    out = run(
        [
            "run_all.py",
            "--data-root",
            str(tmp_path / "data"),
            "--checkpoint-root",
            str(tmp_path / "ckpt"),
            "--config",
            TINY_SCHEDULE,
        ]
    )
    assert out.returncode != 0 and "frame labels but the test split has" in out.stderr
    assert not list((tmp_path / "ckpt").rglob("autoencoder.pt"))


@pytest.mark.parametrize(
    "script, flag",
    [
        ("AE_encoder.py", "--ae-epochs"),
        ("cluster_pose.py", "--memory-size"),
        ("train_pose.py", "--memory-epochs"),
        ("Pseudo_generators.py", "--extrapolate"),
        ("padding_mask.py", "--pad-chunk"),
        ("attention_fusion.py", "--fusion-epochs"),
        ("baseline.py", "--gmm-components"),
        ("extract_features.py", "--fast-extract"),
        ("run_all.py", "--compare"),
    ],
)
def test_help(script, flag):
    out = run([script, "--help"])
    assert out.returncode == 0 and "--dataset" in out.stdout and flag in out.stdout


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dataset", "../x"], "plain name"),
        (["--data-root", "/no/such/folder"], "no such folder"),
        (["--headd", "pool"], "did you mean --head"),
        (["--haed", "flatten"], "did you mean --head"),
        (["--smooth-sigma"], "expected one argument"),
        (["--masking=maybe"], "ignored explicit argument"),
        (["--seed", "-1"], "a seed is an integer from 0"),
        (["--modalities", "pse"], "--modalities pse"),
        (["--fusion-epochs", "abc"], "invalid int value"),
    ],
)
def test_run_all_rejects_bad_arguments_before_any_stage(tmp_path, extra, message):
    out = run(
        ["run_all.py", "--checkpoint-root", str(tmp_path / "ckpt"), "--results-root", str(tmp_path / "res"), *extra]
    )
    assert out.returncode != 0 and message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "ckpt").exists() or not list((tmp_path / "ckpt").rglob("*.pt"))


def test_a_second_run_on_the_same_checkpoint_folder_stops_naming_the_holder(tmp_path):
    from memfuse.io import folder_lock

    make_dataset(tmp_path / "data", "synthetic", TINY)
    held = tmp_path / "ckpt" / "synthetic" / "memfuse"
    with folder_lock(held):
        out = run(
            [
                "run_all.py",
                "--data-root",
                str(tmp_path / "data"),
                "--checkpoint-root",
                str(tmp_path / "ckpt"),
                "--results-root",
                str(tmp_path / "res"),
                "--config",
                TINY_SCHEDULE,
                "--compare",
                "none",
            ]
        )
    assert out.returncode != 0 and "in use by another run" in out.stderr and f"pid {os.getpid()}" in out.stderr
    assert "Traceback" not in out.stderr and not (held / "autoencoder.pt").exists()
    with folder_lock(held):  # released when its holder is done
        pass


def test_new_feature_files_rerun_the_stages_that_read_them(pipeline, tmp_path):
    tmp, args, _ = pipeline
    features = tmp / "data" / "synthetic" / "extracted_features"
    pose = features / "test" / "pose.npy"
    os.utime(
        pose, ns=(pose.stat().st_atime_ns, pose.stat().st_mtime_ns + 1_000_000_000)
    )  # touched: same bytes, new mtime
    again = run([*args, "--compare", "none"])
    assert again.returncode == 0, again.stderr[-2000:]
    reran = [line.split()[1] for line in again.stdout.splitlines() if line.startswith("=== ") and "skipped" not in line]
    # the test poses are read by the pose pseudo features, padding and (through them) the fusion; nothing else reruns
    assert (
        reran[:3] == ["Pseudo_generators_pose.py", "padding_mask.py", "attention_fusion.py"]
        and "AE_encoder.py" not in reran
    )
    unchanged = run([*args, "--compare", "none"])
    assert unchanged.stdout.count("up to date, skipped") == 10


def test_video_files_with_poses_but_no_boxes_run_end_to_end(tmp_path):
    """Video files in, boxes from motion, the dataset's poses: stage 0 and every stage of
    run_all.py, scores per video as CSV."""
    import cv2

    name = f"videocam{os.getpid()}"  # stage 0 writes into the project's data/NAME: removed below
    base = tmp_path / name
    rng = np.random.default_rng(0)
    bg = cv2.GaussianBlur(cv2.resize(rng.integers(0, 256, (24, 32)).astype(np.uint8), (128, 96)), (0, 0), 1.0)
    counts = {"train": (30, 30), "test": (30, 30)}
    for split, folder in (("train", "training"), ("test", "testing")):
        (base / folder / "videos").mkdir(parents=True)
        for v, n in enumerate(counts[split]):
            speed = 8 if split == "test" and v == 1 else 2  # the second test video's square runs
            out = cv2.VideoWriter(
                str(base / folder / "videos" / f"{v + 1:02d}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 96)
            )
            for t in range(n):
                f = bg.copy()
                x = (4 + speed * t) % 100
                f[40:56, x : x + 16] = 255
                out.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
            out.release()
        (base / "extracted_features" / split).mkdir(parents=True)
        pose = np.empty(sum(counts[split]), dtype=object)
        pose[:] = [rng.normal(10, 3, (1, 34)).astype(np.float32) for _ in range(len(pose))]
        np.save(base / "extracted_features" / split / "pose.npy", pose, allow_pickle=True)
    np.save(base / "frame_labels.npy", np.r_[np.zeros(30), np.ones(30)].astype(np.int64))
    try:
        out = run(
            [
                "run_all.py",
                "--dataset",
                name,
                "--data-root",
                str(tmp_path),
                "--checkpoint-root",
                str(tmp_path / "ckpt"),
                "--results-root",
                str(tmp_path / "res"),
                "--config",
                TINY_SCHEDULE,
                "--compare",
                "none",
                "--jobs",
                "1",
                "--memory-size",
                "16",
                "--fast-extract",
            ]
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert "boxes of what moves" in out.stdout
        meta = json.loads((ROOT / "data" / name / "extracted_features" / "train" / "extract_meta.json").read_text())
        assert meta["settings"]["flow"]["method"] == "dis_balanced"  # --fast-extract reached stage 0
        assert len(np.load(ROOT / "data" / name / f"{name}_bboxes_test.npy", allow_pickle=True)) == 60
        csv = (tmp_path / "res" / name / "videos" / "video_02.csv").read_text().splitlines()
        assert csv[0] == "frame,memfuse,AI-VAD baseline,anomalous" and len(csv) == 31
        summary = json.loads((tmp_path / "res" / name / "summary.json").read_text())
        assert summary["recipes"]["memfuse"]["micro_auc"] is not None and summary["annotated_videos"].startswith(
            "2 videos"
        )
        import cv2

        annotated = sorted((tmp_path / "res" / name / "videos").glob("0?.*"))
        assert [p.stem for p in annotated] == ["01", "02"] and not list(
            (tmp_path / "res" / name / "videos").glob(".*partial*")
        )
        cap = cv2.VideoCapture(str(annotated[1]))
        frames = 0
        while cap.grab():
            frames += 1
        assert frames == 30
        assert np.load(tmp_path / "res" / name / "memfuse" / "object_scores.npy").shape[0] == 60
    finally:
        shutil.rmtree(ROOT / "data" / name, ignore_errors=True)


def test_run_all_gives_its_stages_one_spelling_of_each_folder(tmp_path, monkeypatch):
    import run_all

    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").mkdir()
    relative = run_all.parse_args(["--checkpoint-root", "x", "--results-root", "x/../r"])
    absolute = run_all.parse_args(["--checkpoint-root", str(tmp_path / "x"), "--results-root", str(tmp_path / "r")])
    # a stage records the folder it was given: the same folder spelt otherwise must not rerun it
    assert relative.checkpoint_root == absolute.checkpoint_root == str((tmp_path / "x").resolve())
    assert relative.results_root == absolute.results_root

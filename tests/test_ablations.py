"""bench/ablations.py: what a failed run records, and how the tables show it."""

from bench import ablations as A


def test_failure_reason_is_the_error_line_without_its_advice():
    tail = (
        "fusion:  50%|#####     | 100/200\r"
        "error: ped2 train appearance, epoch 13: the autoencoder maps every object to the same code; "
        "Rerun AE_encoder.py\n"
        "run_all: AE_encoder.py failed (exit 1)\n"
    )
    assert (
        A.failure_reason(tail) == "ped2 train appearance, epoch 13: the autoencoder maps every object to the same code"
    )
    assert A.failure_reason("Traceback ...\nKilled\n") == "Killed"  # no error line: the last line
    assert A.failure_reason("") == "no message"


def test_a_failed_run_is_a_row_with_its_reason_and_is_counted():
    ok = {
        "micro_auc": 0.97,
        "macro_auc": 0.99,
        "eer": 0.09,
        "oracle_micro_auc": 0.97,
        "oracle_epoch": 200,
        "wall_seconds": 10.0,
    }
    rows = {"memfuse": {"0": ok, "1": {"failed": True, "reason": "the autoencoder collapsed"}}}
    table = A.runs_table(rows, "synthetic")
    assert "| memfuse | 1 | failed: the autoencoder collapsed |" in table
    assert "| memfuse | 0 | 97.0 |" in table


def test_parts_table_pairs_seeds_and_names_them_when_the_reference_failed_on_some():
    def run(auc: float) -> dict:
        return {"micro_auc": auc}

    failed = {"failed": True, "reason": "collapsed"}
    rows = {
        "memfuse": {"0": run(0.97), "1": run(0.96)},
        "memfuse-no-extrapolate": {"0": run(0.96), "1": run(0.94)},
        "paper": {"0": run(0.40), "1": failed, "2": run(0.30)},
        "paper+standardise": {"0": run(0.80), "1": run(0.90), "2": run(0.70)},
    }
    table = A.parts_table(rows)
    assert "| 95.0 (94.0), seeds 0,1; -1.5 against memfuse |" in table  # all seeds paired: no seed list
    # paper failed at seed 1: the difference pairs seeds 0 and 2 only, and says so
    assert "| 80.0 (70.0), seeds 0,1,2; +40.0 against paper on seeds 0,2 |" in table
    assert "| 35.0 (30.0), seeds 0,2; failed at seed 1 |" in table

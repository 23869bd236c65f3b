"""Shared test setup: the project root on the import path, so that tests import the stage
scripts (``attention_fusion``, ``extract_features``), ``bench`` and ``memfuse`` wherever
pytest is started from."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def one_thread():
    """The tests' tensors are small: one torch thread is faster (and on a busy machine much
    faster) than several."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

"""Shared fixtures. Real data lives in ../shared/data beside the checkout (never copied here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("HAMNET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; tests using it are skipped, with the reason, when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set HAMNET_SHARED_DATA to its location)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tests with one torch thread, restoring the count afterwards.

    Small tensors gain nothing from intra-op threads, and on a busy 2-core machine OpenMP
    spin-waiting made them up to 20x slower (measured while other jobs ran).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

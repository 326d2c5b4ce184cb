"""Shared fixtures. Real data lives in ../shared/data beside the checkout (never copied here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("HAMNET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
# Set by .ci/run when the real data folder exists: then a shared_data test may not skip.
REQUIRE_SHARED_DATA = "HAMNET_REQUIRE_SHARED_DATA"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; tests using it are skipped, with the reason, when it is absent.

    Every test that requests this fixture (directly or through another fixture) is marked
    ``shared_data`` by :func:`pytest_collection_modifyitems`; with HAMNET_REQUIRE_SHARED_DATA=1
    the skip becomes a failure (:func:`pytest_runtest_makereport`).
    """
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set HAMNET_SHARED_DATA to its location)")
    return SHARED_DATA


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses the real data, so that none can forget the marker."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """With HAMNET_REQUIRE_SHARED_DATA=1, a skipped shared_data test is reported as a failure.

    CI sets the variable when ../shared/data exists, so a run that lost the data (or a test
    that skips for another reason) cannot stay green by skipping the real-data checks.
    """
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and os.environ.get(REQUIRE_SHARED_DATA) == "1"
        and item.get_closest_marker("shared_data") is not None
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} needs the real data but was skipped ({reason}); "
            f"{REQUIRE_SHARED_DATA}=1 says it must run here (data folder: {SHARED_DATA})"
        )


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

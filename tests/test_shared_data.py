"""The shared_data marker and HAMNET_REQUIRE_SHARED_DATA: real-data tests cannot skip unnoticed.

The mechanism lives in tests/conftest.py; here it runs on a small test file in a separate
pytest process (the repository's conftest.py and pyproject.toml copied beside it), with the
data folder pointed at a missing or an existing directory.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO_ROOT = TESTS.parent

INNER_TESTS = """
import pytest


@pytest.fixture
def via_fixture(shared_data):
    return shared_data


def test_direct(shared_data):
    assert shared_data.is_dir()


def test_indirect(via_fixture):
    assert via_fixture.is_dir()


def test_plain():
    pass


def test_skips_for_its_own_reason(shared_data):
    pytest.skip("a reason of its own")


@pytest.mark.skip(reason="unrelated to the real data")
def test_unrelated_skip():
    pass
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copy(TESTS / "conftest.py", root / "conftest.py")
    shutil.copy(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")  # markers, --strict-markers
    (root / "test_inner.py").write_text(INNER_TESTS)
    return root


def _run(root: Path, data: Path, *args: str, require: bool) -> tuple[int, dict[str, tuple[str, str]], str]:
    """Run pytest on ``root``; returns (exit status, {test name: (outcome, message)}, output)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HAMNET_REQUIRE_SHARED_DATA", "PYTEST_ADDOPTS")}
    env["HAMNET_SHARED_DATA"] = str(data)
    if require:
        env["HAMNET_REQUIRE_SHARED_DATA"] = "1"
    xml = root / "report.xml"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",
            f"--junitxml={xml}",
            *args,
            "test_inner.py",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    results = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome, message = child.tag, (child.get("message") or "") + (child.text or "")
        results[case.get("name")] = (outcome, message)
    return r.returncode, results, r.stdout + r.stderr


def test_marker_comes_from_the_fixture_and_missing_data_skips(project, tmp_path):
    # -m shared_data selects exactly the tests that use the fixture, directly or through another.
    rc, res, out = _run(project, tmp_path / "absent", "-m", "shared_data", require=False)
    assert rc == 0, out
    assert {k: v[0] for k, v in res.items()} == {
        "test_direct": "skipped",
        "test_indirect": "skipped",
        "test_skips_for_its_own_reason": "skipped",
    }
    assert "absent" in res["test_direct"][1] and "HAMNET_SHARED_DATA" in res["test_direct"][1]


def test_missing_data_fails_when_required(project, tmp_path):
    rc, res, out = _run(project, tmp_path / "absent", require=True)
    assert rc == 1, out
    for name in ("test_direct", "test_indirect", "test_skips_for_its_own_reason"):
        outcome, message = res[name]
        assert outcome in ("failure", "error"), (name, res)  # error: it failed in the fixture's setup
        assert "needs the real data but was skipped" in message and "HAMNET_REQUIRE_SHARED_DATA=1" in message
        assert "absent" in message  # the folder it looked for
    # Tests that do not use the real data are untouched.
    assert res["test_plain"][0] == "passed" and res["test_unrelated_skip"][0] == "skipped"


def test_present_data_runs_and_any_skip_fails_when_required(project, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rc, res, out = _run(project, data, require=True)
    assert rc == 1, out
    assert res["test_direct"][0] == res["test_indirect"][0] == res["test_plain"][0] == "passed"
    # A shared_data test that skips for a reason of its own fails too; other skips stay skips.
    outcome, message = res["test_skips_for_its_own_reason"]
    assert outcome == "failure" and "a reason of its own" in message, res
    assert res["test_unrelated_skip"][0] == "skipped"


def test_no_test_reaches_the_real_data_around_the_fixture():
    """The marker comes from the fixture, so a test reading ../shared/data by path would escape it."""
    offenders = []
    for path in sorted(TESTS.glob("*.py")):
        if path.name in ("conftest.py", Path(__file__).name):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (isinstance(node, ast.Name) and node.id == "SHARED_DATA") or (
                isinstance(node, ast.alias) and node.name == "SHARED_DATA"
            ):
                offenders.append(f"{path.name}:{getattr(node, 'lineno', '?')}: SHARED_DATA")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                if any(s in node.value for s in ("shared/data", "../shared", "HAMNET_SHARED_DATA")):
                    offenders.append(f"{path.name}:{node.lineno}: {node.value!r}")
    assert not offenders, f"use the shared_data fixture instead: {offenders}"

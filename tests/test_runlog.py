"""start_run_log: one log file per command, with the project's and Luigi's messages in it."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import re
from pathlib import Path

import pytest

from pipeline import runlog
from pipeline.runlog import start_run_log

# asctime, pid, level, logger name, message (runlog._LOG_FORMAT)
LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<pid>\d+) (?P<level>[A-Z]+) (?P<name>[\w.-]+): (?P<msg>.*)$"
)


@pytest.fixture
def fresh_runlog(monkeypatch):
    """Each test starts with no run log open and leaves the logging tree as it found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    pipeline_level = logging.getLogger("hamnet.pipeline").level
    # Another test's luigi.build may have set Luigi's logger level (from luigi.cfg): start from
    # the state a fresh command has, where its INFO records propagate to the root.
    luigi_log = logging.getLogger("luigi-interface")
    luigi_state = (luigi_log.level, luigi_log.propagate)
    luigi_log.setLevel(logging.NOTSET)
    luigi_log.propagate = True
    monkeypatch.setattr(runlog, "_active", {"pid": None, "root": None, "handler": None, "path": None})
    yield
    luigi_log.setLevel(luigi_state[0])
    luigi_log.propagate = luigi_state[1]
    for h in root.handlers:
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
    logging.getLogger("hamnet.pipeline").setLevel(pipeline_level)


def _records(path: Path) -> list[dict[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    matches = [LINE.match(line) for line in lines]
    assert all(matches), [line for line, m in zip(lines, matches) if not m]
    return [m.groupdict() for m in matches]


def _child_logs(output_dir: str, queue) -> None:
    # A worker forked by Luigi: opening the run log again must reuse the parent's file.
    queue.put(str(start_run_log(output_dir)))
    logging.getLogger("hamnet.tasks").info("from the forked worker")


def test_one_file_per_command_with_project_and_luigi_messages(tmp_path, fresh_runlog):
    out = tmp_path / "out"
    path = start_run_log(out)
    assert path.parent == out.resolve() / "logs"
    assert re.fullmatch(rf"run-\d{{8}}-\d{{6}}-{os.getpid()}\.log", path.name), path.name
    # Idempotent: every task of the command calls it, with the folder spelled in any way.
    (tmp_path / "link").symlink_to(out)
    assert (
        start_run_log(out) == start_run_log(tmp_path / "link") == start_run_log(tmp_path / "x" / ".." / "out") == path
    )

    logging.getLogger("hamnet.tasks").info("task message %d", 1)
    logging.getLogger("hamnet.pipeline").info("pipeline message")
    logging.getLogger("extractors.decode").warning("decoder warning")
    logging.getLogger("luigi-interface").info("luigi scheduling message")
    logging.getLogger("hamnet.tasks").debug("debug detail stays out")

    ctx = mp.get_context("fork")
    q = ctx.Queue()
    child = ctx.Process(target=_child_logs, args=(str(out), q))
    child.start()
    child_path = q.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0 and Path(child_path) == path

    assert sorted(p.name for p in (out / "logs").iterdir()) == [path.name]  # one command, one file
    recs = _records(path)
    assert [(r["name"], r["level"], r["msg"]) for r in recs] == [
        ("hamnet.tasks", "INFO", "task message 1"),
        ("hamnet.pipeline", "INFO", "pipeline message"),
        ("extractors.decode", "WARNING", "decoder warning"),
        ("luigi-interface", "INFO", "luigi scheduling message"),
        ("hamnet.tasks", "INFO", "from the forked worker"),
    ]
    assert {r["pid"] for r in recs[:4]} == {str(os.getpid())} and recs[4]["pid"] == str(child.pid)


def test_another_output_dir_gets_its_own_file(tmp_path, fresh_runlog):
    first = start_run_log(tmp_path / "a")
    logging.getLogger("hamnet.tasks").info("for a")
    second = start_run_log(tmp_path / "b")
    logging.getLogger("hamnet.tasks").info("for b")
    assert first.parent == (tmp_path / "a" / "logs").resolve() and second.parent == (tmp_path / "b" / "logs").resolve()
    assert [r["msg"] for r in _records(first)] == ["for a"]  # the first file's handler was removed
    assert [r["msg"] for r in _records(second)] == ["for b"]
    ours = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    assert [Path(h.baseFilename) for h in ours if Path(h.baseFilename).is_relative_to(tmp_path.resolve())] == [second]

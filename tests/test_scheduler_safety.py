"""Scaling out safely: luigid on loopback only, private state folder, safe output roots and modes.

Only loopback addresses are ever bound here; the refusals of other addresses are checked
before anything binds.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import h5py
import numpy as np
import pytest

from cli import scheduler
from core.atomic import atomic_path, write_text_atomic
from pipeline.output_root import OutputRootError, check_output_root, current_umask

REPO = Path(__file__).resolve().parent.parent
HAS_PROC_NET = Path("/proc/net/tcp").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "cli.scheduler", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class _Umask:
    """Set the process umask for a block and restore it (it is process-wide)."""

    def __init__(self, mask: int):
        self.mask = mask

    def __enter__(self):
        self.old = os.umask(self.mask)

    def __exit__(self, *exc):
        os.umask(self.old)


# --------------------------------------------------------------------------- the scheduler


@pytest.mark.skipif(not HAS_PROC_NET, reason="needs Linux /proc/net/tcp to read listening sockets")
def test_start_listens_on_loopback_only_with_state_in_a_private_folder(tmp_path):
    out, port = tmp_path / "out", _free_port()
    started = _cli("start", "--output-dir", str(out), "--port", str(port), cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    state = out / "scheduler"
    pid = int((state / scheduler.PID_FILE).read_text())
    try:
        # What the kernel says the started process listens on: 127.0.0.1 and nothing else.
        assert scheduler.listening_sockets(pid) == [("127.0.0.1", port)]
        assert f"listening on 127.0.0.1:{port}" in started.stdout
        # No socket on this port bound to a wildcard address, by any process.
        wildcard = [(a, p) for a, p in scheduler.listening_sockets() if p == port and a in ("0.0.0.0", "::")]
        assert wildcard == []
        # It serves its API there.
        reply = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/task_list?data={{}}", timeout=10).read()
        assert b'"response"' in reply
        assert _mode(state) == 0o700 and state.stat().st_uid == os.geteuid()
        assert _mode(state / scheduler.PID_FILE) == 0o600
        status = _cli("status", "--output-dir", str(out), cwd=tmp_path)
        assert status.returncode == 0 and f"pid {pid}" in status.stdout, status.stdout
        # A second start finds it running instead of starting another.
        again = _cli("start", "--output-dir", str(out), "--port", str(port), cwd=tmp_path)
        assert again.returncode == 0 and f"already running (pid {pid})" in again.stdout
    finally:
        stopped = _cli("stop", "--output-dir", str(out), cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
    # luigid saved its state on SIGTERM; with umask 077 nothing in the folder is readable by others
    # (plain `luigid --background` writes its state pickle and pid file with mode 0666).
    assert (state / scheduler.STATE_FILE).is_file()
    assert [p.name for p in state.iterdir() if _mode(p) & 0o077] == []
    assert not (state / scheduler.PID_FILE).exists()


@pytest.mark.skipif(not HAS_PROC_NET, reason="needs Linux /proc/net/tcp to read listening sockets")
def test_start_stops_a_scheduler_whose_sockets_are_not_what_was_asked(tmp_path, monkeypatch):
    # Defence in depth: if luigid ever listened somewhere else (a Luigi change, a config), the
    # check after start catches it. Simulated by reporting a wildcard socket; only 127.0.0.1 binds.
    state, port = scheduler.ensure_private_dir(tmp_path / "s"), _free_port()
    monkeypatch.setattr(scheduler, "listening_sockets", lambda pid=None: [("0.0.0.0", port)])
    with pytest.raises(RuntimeError, match=rf"listens on 0.0.0.0:{port}, not only on 127.0.0.1; stopped it"):
        scheduler.start(state, "127.0.0.1", port)
    assert not (state / scheduler.PID_FILE).exists()
    with socket.socket() as s:  # nothing listens on the port any more: the process is gone
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT leftover is no listener
        s.bind(("127.0.0.1", port))


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "", " "])
def test_wildcard_addresses_are_refused_even_with_expose(address):
    with pytest.raises(scheduler.Refused, match="every interface"):
        scheduler.check_bind_address(address, expose=True)


def test_non_loopback_address_needs_expose_and_loopback_names_are_fine():
    # 192.0.2.1 is TEST-NET-1: checked only, never bound.
    with pytest.raises(scheduler.Refused, match="--expose"):
        scheduler.check_bind_address("192.0.2.1")
    assert scheduler.check_bind_address("192.0.2.1", expose=True) == ["192.0.2.1"]
    assert scheduler.check_bind_address("127.0.0.1") == ["127.0.0.1"]
    assert set(scheduler.check_bind_address("localhost")) <= {"127.0.0.1", "::1"}


def test_cli_refuses_a_public_address_before_starting_anything(tmp_path):
    res = _cli("start", "--state-dir", str(tmp_path / "s"), "--address", "0.0.0.0", "--port", "1", cwd=tmp_path)
    assert res.returncode == 2
    assert "refused: --address 0.0.0.0" in res.stderr and "every interface" in res.stderr
    assert not (tmp_path / "s").exists()


def test_state_folder_is_created_0700_and_loose_or_foreign_ones_are_refused(tmp_path):
    with _Umask(0o022):
        made = scheduler.ensure_private_dir(tmp_path / "a" / "state")
    assert _mode(made) == 0o700

    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o750)
    with pytest.raises(scheduler.Refused, match=rf"{loose} has mode 0750.*chmod 700"):
        scheduler.ensure_private_dir(loose)

    link = tmp_path / "link"
    link.symlink_to(made)
    with pytest.raises(scheduler.Refused, match="not a plain folder"):
        scheduler.ensure_private_dir(link)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_state_folder_of_another_user_is_refused(tmp_path):
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    os.chown(other, 65534, 65534)
    with pytest.raises(scheduler.Refused, match="belongs to uid 65534"):
        scheduler.ensure_private_dir(other)


def test_proc_net_addresses_decode():
    # Lines as the kernel writes them for 127.0.0.1, 0.0.0.0 and ::1 (host byte order words).
    assert scheduler._decode_proc_address("0100007F") == "127.0.0.1"
    assert scheduler._decode_proc_address("00000000") == "0.0.0.0"
    assert scheduler._decode_proc_address("00000000000000000000000001000000") == "::1"


# --------------------------------------------------------------------------- output root


def test_world_writable_output_root_is_refused_with_the_fix(tmp_path):
    root = tmp_path / "open"
    root.mkdir()
    os.chmod(root, 0o777)
    with pytest.raises(OutputRootError, match=rf"output root {root} is writable by every user.*chmod o-w {root}"):
        check_output_root(root)

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp: fine as a parent, not as the root
    with pytest.raises(OutputRootError, match="private folder inside it"):
        check_output_root(shared)
    assert check_output_root(shared / "mine") == (shared / "mine").resolve()

    parent = tmp_path / "parent"
    parent.mkdir()
    os.chmod(parent, 0o777)  # no sticky bit: anyone could rename the root away
    with pytest.raises(OutputRootError, match=rf"its parent {parent} is writable by every user without the sticky bit"):
        check_output_root(parent / "out")


def test_world_writable_output_root_stops_a_pipeline_task(tmp_path):
    import tasks

    root = tmp_path / "open_out"
    root.mkdir()
    os.chmod(root, 0o777)
    with pytest.raises(OutputRootError, match=str(root)):
        tasks.RunAll(output_dir=str(root))
    assert list(root.iterdir()) == []  # refused before writing anything (no logs/)


def test_output_root_that_is_a_file_or_cannot_be_created_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputRootError, match="is not a directory"):
        check_output_root(f)
    with pytest.raises(OutputRootError, match="cannot be created"):
        check_output_root(f / "sub")


def test_unwritable_output_root_is_refused(tmp_path):
    if os.geteuid() == 0:
        # root may write any mode-0555 folder; /proc/1 is a folder nobody may write.
        root = Path("/proc/1")
        if not root.is_dir():
            pytest.skip("running as root without /proc: no folder root cannot write")
    else:
        root = tmp_path / "ro"
        root.mkdir()
        os.chmod(root, 0o555)
    with pytest.raises(OutputRootError, match=r"is not writable by .*uid"):
        check_output_root(root)


def test_umask_that_makes_folders_world_writable_is_refused(tmp_path):
    with _Umask(0o000):
        assert current_umask() == 0
        with pytest.raises(OutputRootError, match="umask 0000"):
            check_output_root(tmp_path / "u0")
    assert not (tmp_path / "u0").exists()
    with _Umask(0o027):
        assert current_umask() == 0o027
        assert check_output_root(tmp_path / "u27").is_dir()


# --------------------------------------------------------------------------- file modes


@pytest.mark.parametrize(("umask", "file_mode"), [(0o027, 0o640), (0o022, 0o644), (0o002, 0o664), (0o000, 0o664)])
def test_atomic_outputs_follow_the_umask_and_are_never_world_writable(tmp_path, umask, file_mode):
    with _Umask(umask):
        text = write_text_atomic(tmp_path / "d" / "a.txt", "x")
        with atomic_path(tmp_path / "d" / "f.h5") as tmp:  # h5py opens the name itself
            with h5py.File(tmp, "w") as f:
                f["x"] = np.arange(3)
    assert _mode(text) == file_mode
    assert _mode(tmp_path / "d" / "f.h5") == file_mode
    assert not list((tmp_path / "d").glob(".*.partial"))

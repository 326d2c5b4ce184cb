"""A full disk is an error naming the file ("no space left on device: PATH"), with nothing partial left.

The real case needs a small file system: a 256 KiB tmpfs, mounted when the tests run as root
(CI); elsewhere that test is skipped with the reason. torch.save reports a full disk as
"[enforce fail at inline_container.cc] unexpected pos", which names neither cause nor file.
"""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

import core.atomic
from core.atomic import DiskFullError, atomic_path, write_text_atomic
from pipeline.console import is_user_error


def test_enospc_becomes_disk_full_error_naming_the_file(tmp_path):
    target = tmp_path / "hamnet.pt"
    with pytest.raises(DiskFullError) as err, atomic_path(target) as tmp:
        tmp.write_bytes(b"x")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(err.value) == f"no space left on device: {target} (free some space, then run the same command again)"
    assert err.value.errno == errno.ENOSPC and is_user_error(err.value)
    assert list(tmp_path.iterdir()) == []


def test_opaque_error_on_a_full_disk_is_put_down_to_it(tmp_path, monkeypatch):
    class Usage:
        free = 4096

    monkeypatch.setattr(core.atomic.shutil, "disk_usage", lambda _p: Usage)
    with pytest.raises(DiskFullError), atomic_path(tmp_path / "f.pt"):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 21376 vs 21264")
    # With space left, the same error is a bug and stays as it is.
    Usage.free = 10**9
    with pytest.raises(RuntimeError, match="unexpected pos"), atomic_path(tmp_path / "f.pt"):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 21376 vs 21264")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def tiny_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=755", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_real_full_disk_with_torch_save(tiny_fs):
    import torch

    target = tiny_fs / "out" / "hamnet.pt"
    with pytest.raises(DiskFullError, match=f"no space left on device: {target}"), atomic_path(target) as tmp:
        torch.save({"w": torch.zeros(1_000_000)}, tmp)  # 4 MB into 256 KiB
    assert list((tiny_fs / "out").iterdir()) == []
    # With space, the same write succeeds: nothing was left behind to get in the way.
    write_text_atomic(tiny_fs / "out" / "summary.txt", "ok\n")
    assert Path(tiny_fs / "out" / "summary.txt").read_text() == "ok\n"

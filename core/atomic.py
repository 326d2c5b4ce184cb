"""Atomic file output: a crash or kill never leaves a file under its final name half-written.

Everything the project writes (features, flow caches, checkpoints, CSVs, JSON, reports) goes to
a hidden temporary file in the destination folder first (same file system, so the final
``os.replace`` is atomic), is flushed to disk, and only then takes its final name. Luigi
decides what is done by whether an output exists, so a partial file under the final name would
make a rerun skip work that never finished.

Permissions: the temporary file is created with mode ``0o664`` filtered by the process umask
(and by a default ACL of the folder, where one exists), like a plain ``open(path, "w")`` except
that it is never world-writable, whatever the umask. ``tempfile.mkstemp`` would give ``0o600``,
so on shared storage the group that reads the outputs could not (docs/pipeline.md, "Shared
storage": run workers with umask 027 or 007).
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

PARTIAL_SUFFIX = ".partial"
# rw for owner and group, read for others, before the umask; never world-writable.
FILE_MODE = 0o664


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    For writers that want a file name (h5py, torch.save); on any exception the temporary file
    is removed and the exception propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_partial(path)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, Exception) and not isinstance(e, DiskFullError) and is_disk_full(e, path.parent):
            raise DiskFullError(path) from e
        raise


class DiskFullError(OSError):
    """Writing ``path`` failed because its file system is full (the message names the path)."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(errno.ENOSPC, f"no space left on device: {path}")
        self.path = str(path)

    def __str__(self) -> str:
        return f"no space left on device: {self.path} (free some space, then run the same command again)"


# Below this many free bytes a failed write is put down to a full disk: torch.save reports it
# as "[enforce fail at inline_container.cc] unexpected pos" and h5py as a generic error,
# neither naming the cause or the file.
_NEARLY_FULL = 1 << 20


def is_disk_full(exc: BaseException, folder: str | os.PathLike) -> bool:
    """True when ``exc`` (or an exception it was raised from) is ENOSPC, or ``folder``'s disk is full."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    try:
        return shutil.disk_usage(folder).free < _NEARLY_FULL
    except OSError:
        return False


def _create_partial(path: Path) -> str:
    """Create an empty ``.<name>.<random>.partial`` beside ``path``; its mode follows the umask.

    Like ``mkstemp`` (``O_EXCL``: never reuses or follows an existing name) but with mode
    ``0o664``: the kernel applies the umask and the folder's default ACL, and no umask can
    make the file writable by every user.
    """
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name for", str(path))


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """Like ``open(path, mode)`` for writing, but the file appears under ``path`` only on success.

    Text modes default to UTF-8. Hand the file object (not a name) to writers such as
    ``np.savez``, which would otherwise append an extension to the temporary name.
    """
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **open_kwargs) as fh:
            yield fh


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_open(path, "w", newline="") as fh:
        fh.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any, **dumps_kwargs: Any) -> Path:
    """Write ``obj`` as JSON with a trailing newline, atomically: the project's one JSON format.

    Sorted keys and one-space indent keep records diffable; ``ensure_ascii=False`` keeps video
    names such as ``Straße.mp4`` readable. Callers may override (e.g. ``default=float``).
    """
    for key, value in (("indent", 1), ("sort_keys", True), ("ensure_ascii", False)):
        dumps_kwargs.setdefault(key, value)
    return write_text_atomic(path, json.dumps(obj, **dumps_kwargs) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Parse a UTF-8 JSON file (errors propagate: callers say what the file was for)."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def remove_stale_partials(path: str | os.PathLike) -> list[Path]:
    """Delete temporary files a killed writer of ``path`` left behind (``.<name>.*.partial``).

    Safe because the scheduler runs a given task in one place at a time: no live writer of
    ``path`` can own them.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = [p for p in path.parent.glob(f".{_glob_escape(path.name)}.*{PARTIAL_SUFFIX}") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def copy_file_atomic(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy ``src`` onto ``dst`` so that ``dst`` is never seen half-copied."""
    remove_stale_partials(dst)
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)

"""Atomic file output: a crash or kill never leaves a file under its final name half-written.

Everything the project writes (features, flow caches, checkpoints, CSVs, JSON, reports) goes to
a hidden temporary file in the destination folder first (same file system, so the final
``os.replace`` is atomic), is flushed to disk, and only then takes its final name. Luigi
decides what is done by whether an output exists, so a partial file under the final name would
make a rerun skip work that never finished.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

PARTIAL_SUFFIX = ".partial"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    For writers that want a file name (h5py, torch.save); on any exception the temporary file
    is removed and the exception propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
    """Write ``obj`` as JSON (``indent=2`` unless given) with a trailing newline, atomically."""
    dumps_kwargs.setdefault("indent", 2)
    return write_text_atomic(path, json.dumps(obj, **dumps_kwargs) + "\n")

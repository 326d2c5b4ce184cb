"""Content hashes: of files (checkpoints, labels, ground truth) and of settings.

Output paths carry these hashes so that Luigi's "output exists = done" rule reruns exactly the
stages whose inputs or settings changed. Files are hashed by content, never by path or mtime,
so moving a checkpoint reruns nothing and replacing it reruns what depends on it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

_SHA256: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, memoised by (resolved path, size, mtime).

    The memo matters: a dataset-level task asks for the same label file's hash once per video.
    Raises ``FileNotFoundError`` naming the path when it does not exist.
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise FileNotFoundError(f"{p}: file not found") from None
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA256:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _SHA256[key] = h.hexdigest()
    return _SHA256[key]


def file_digest(path: str | os.PathLike) -> str:
    """The first 16 hex digits of :func:`file_sha256`: short enough for paths and records."""
    return file_sha256(path)[:16]


def json_hash(obj: Any, length: int) -> str:
    """First ``length`` hex digits of the sha256 of ``obj`` as canonical JSON (sorted keys).

    Values JSON cannot encode are hashed by ``str()``, so a ``Path`` in settings is fine.
    """
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def settings_hash(*sections: Any) -> str:
    """10-digit hash of the settings and input identities that decide one output's path."""
    return json_hash(list(sections), 10)

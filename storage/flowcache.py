"""The per-video flow cache: quantised TV-L1 flow in one HDF5 file, written atomically.

Layout of a cache file: dataset ``flow`` uint8 [N-1, crop, crop, 2] (field i goes from frame i
to frame i+1 of the 25 fps sequence, x then y, value q meaning q * 2b/255 - b pixels with
b = ``flow_bound``), chunked one snippet per chunk and gzip-compressed (flow is smooth, it
shrinks 3-6x); attributes ``format`` ("hamnet-flow-cache"), ``format_version``, ``flow_key``
(ExtractSettings.flow_key of the settings that produced it), ``settings`` (JSON of those
settings), ``n_frames``, ``duration``, ``fps``, ``source``.

Extraction reads it back through :func:`open_flow_cache`, which checks the key so that a
cache computed under other settings is never used silently.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from core.atomic import atomic_path

FORMAT = "hamnet-flow-cache"
FORMAT_VERSION = 1


class FlowCacheError(ValueError):
    """A flow cache file is unreadable or was made under other settings; names the file."""


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Open a temporary HDF5 file beside ``path``; on success fsync and rename it onto ``path``."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            yield f


class FlowCacheWriter:
    """Appends flow fields to an open (temporary) HDF5 file, growing the dataset."""

    def __init__(self, f: h5py.File, size: int):
        self.ds = f.create_dataset(
            "flow",
            shape=(0, size, size, 2),
            maxshape=(None, size, size, 2),
            dtype=np.uint8,
            chunks=(16, size, size, 2),
            compression="gzip",
            compression_opts=1,
        )

    def append(self, fields: np.ndarray) -> None:
        n = self.ds.shape[0]
        if fields.shape[0] == 0:
            return
        self.ds.resize(n + fields.shape[0], axis=0)
        self.ds[n:] = fields


def write_attrs(f: h5py.File, attrs: Mapping[str, Any]) -> None:
    base = {"format": FORMAT, "format_version": FORMAT_VERSION}
    for k, v in {**base, **attrs}.items():
        f.attrs[k] = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v


@contextlib.contextmanager
def open_flow_cache(path: str | os.PathLike, flow_key: str | None = None) -> Iterator[h5py.Dataset]:
    """Yield the ``flow`` dataset of a cache file, checking format and (optionally) flow_key."""
    path = Path(path)
    if not path.is_file():
        raise FlowCacheError(f"{path}: no such flow cache file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise FlowCacheError(f"{path}: not a readable HDF5 flow cache ({e})") from e
    try:
        if f.attrs.get("format") != FORMAT or "flow" not in f:
            raise FlowCacheError(f"{path}: not a flow cache (format attribute {f.attrs.get('format')!r})")
        if flow_key is not None and f.attrs.get("flow_key") != flow_key:
            raise FlowCacheError(
                f"{path}: computed under other flow settings (flow_key {f.attrs.get('flow_key')!r}, "
                f"expected {flow_key!r}); delete it or point to the right cache"
            )
        yield f["flow"]
    finally:
        f.close()

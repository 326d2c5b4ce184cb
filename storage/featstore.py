"""The feature store: one HDF5 file per video, the contract between extraction and HAM-Net.

Layout of ``<store>/<video_id>.h5`` (see docs/DESIGN.md of the project brief):

* datasets ``rgb`` and ``flow``: float32, shape (T, D) each, the same T for both
  (D = 1024 for Kinetics I3D); RGB-only backbones (extractors/backbones.py) store ``rgb`` alone
  (attribute ``streams = "rgb"``, D = the backbone's width);
* attributes: ``fps`` (sampling rate, 25), ``frames_per_snippet`` (16), ``n_frames`` (frames
  after resampling), ``duration`` (seconds of the source), ``source`` (the file it came from),
  ``video_id``, ``settings`` (a JSON string: extractor settings including checkpoint hashes),
  ``random_backbone`` (True when features come from an untrained, seeded backbone — such
  features are not meaningful and every consumer must say so), ``streams`` ("rgb+flow" or
  "rgb") and ``feature_dim`` (the width of one joint row HAM-Net reads).

Files are written atomically: the data goes to a hidden temporary file in the same
directory, is flushed to disk, and only then renamed onto the final name. A killed run
therefore never leaves a file under the final name that looks complete.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from core.atomic import atomic_path

FORMAT_VERSION = 1
REQUIRED_ATTRS = ("fps", "frames_per_snippet", "n_frames", "duration", "source", "video_id")


class FeatureStoreError(ValueError):
    """A feature file is missing, malformed or inconsistent; the message names the file."""


@dataclass
class FeatureFile:
    """Features of one video as read from the store."""

    video_id: str
    rgb: np.ndarray
    flow: np.ndarray | None  # None for RGB-only backbones
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def num_snippets(self) -> int:
        return int(self.rgb.shape[0])

    def joint(self) -> np.ndarray:
        """RGB and flow concatenated per snippet (T x 2D), the input HAM-Net consumes.

        The order (RGB first, then flow) follows the W-TALC joint feature files. An RGB-only
        file's joint row is its RGB row.
        """
        if self.flow is None:
            return self.rgb
        return np.concatenate([self.rgb, self.flow], axis=1)

    @property
    def settings(self) -> dict[str, Any]:
        raw = self.attrs.get("settings", "{}")
        return json.loads(raw) if isinstance(raw, str) else dict(raw)

    @property
    def seconds_per_snippet(self) -> float:
        return float(self.attrs["frames_per_snippet"]) / float(self.attrs["fps"])


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_video_id(name: str) -> str:
    """Turn a video file name (without directory) into an id usable as a file name.

    Keeps letters, digits, '.', '_' and '-'; everything else (spaces, slashes, non-ASCII
    after NFKD folding) becomes '_'. The extension is removed. Leading dots are stripped so
    that an id can never be '.', '..' or a hidden file, and the result is never empty.
    Different names can map to the same id: use :func:`assign_video_ids` for a set of files,
    which detects such collisions and disambiguates them deterministically.
    """
    base = Path(name).name
    stem = Path(base).stem if Path(base).suffix else base
    folded = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    cleaned = _UNSAFE.sub("_", folded).strip("._") or "video"
    return cleaned[:200]


def assign_video_ids(names: list[str]) -> dict[str, str]:
    """Map each file name to a unique safe id; colliding ids get a short content-free suffix.

    The suffix is derived from the original name (a hash), so the mapping is stable across
    runs and independent of the order in which files are listed.
    """
    import hashlib

    # Group case-insensitively: ids differing only in case collide on macOS/Windows file systems.
    groups: dict[str, list[str]] = {}
    for n in sorted(set(names)):
        groups.setdefault(safe_video_id(n).lower(), []).append(n)
    out: dict[str, str] = {}
    for group in groups.values():
        if len(group) == 1:
            out[group[0]] = safe_video_id(group[0])
            continue
        for n in group:
            h = hashlib.sha1(n.encode("utf-8", "surrogateescape")).hexdigest()[:8]
            out[n] = f"{safe_video_id(n)}-{h}"
    return out


def feature_path(store_dir: str | os.PathLike, video_id: str) -> Path:
    return Path(store_dir) / f"{video_id}.h5"


def write_features(
    path: str | os.PathLike,
    rgb: np.ndarray,
    flow: np.ndarray | None,
    *,
    video_id: str,
    fps: float,
    frames_per_snippet: int,
    n_frames: int,
    duration: float,
    source: str,
    settings: Mapping[str, Any] | None = None,
    random_backbone: bool = False,
    extra_attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write one video's features atomically; returns the final path. ``flow=None`` writes an
    RGB-only file (``streams = "rgb"``)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.float32)
    rgb_only = flow is None
    flow = rgb[:, :0] if rgb_only else np.ascontiguousarray(flow, dtype=np.float32)
    path = Path(path)
    if rgb.ndim != 2 or flow.ndim != 2:
        raise FeatureStoreError(f"{path}: rgb and flow must be 2-D (T x D), got {rgb.shape} and {flow.shape}")
    if rgb.shape[0] != flow.shape[0]:
        raise FeatureStoreError(f"{path}: rgb has T={rgb.shape[0]} but flow has T={flow.shape[0]}")
    if not (np.isfinite(rgb).all() and np.isfinite(flow).all()):
        raise FeatureStoreError(f"{path}: features contain NaN or inf; refusing to cache them")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("rgb", data=rgb)
            if not rgb_only:
                f.create_dataset("flow", data=flow)
            attrs = {
                "format_version": FORMAT_VERSION,
                "video_id": video_id,
                "fps": float(fps),
                "frames_per_snippet": int(frames_per_snippet),
                "n_frames": int(n_frames),
                "duration": float(duration),
                "source": str(source),
                "settings": json.dumps(dict(settings or {}), sort_keys=True, default=str),
                "random_backbone": bool(random_backbone),
                "streams": "rgb" if rgb_only else "rgb+flow",
                "feature_dim": int(rgb.shape[1] + flow.shape[1]),
            }
            attrs.update(extra_attrs or {})
            for k, v in attrs.items():
                f.attrs[k] = v
    return path


def read_features(path: str | os.PathLike) -> FeatureFile:
    """Read one feature file, validating the contract; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FeatureStoreError(f"{path}: no such feature file")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            rgb_only = attrs.get("streams") == "rgb"
            missing = [k for k in (("rgb",) if rgb_only else ("rgb", "flow")) if k not in f]
            if missing:
                raise FeatureStoreError(f"{path}: missing dataset(s) {missing}")
            rgb = f["rgb"][()]
            flow = None if rgb_only else f["flow"][()]
    except FeatureStoreError:
        raise
    except (OSError, KeyError) as e:
        raise FeatureStoreError(f"{path}: not a readable HDF5 feature file ({e})") from e
    absent = [k for k in REQUIRED_ATTRS if k not in attrs]
    if absent:
        raise FeatureStoreError(f"{path}: missing attribute(s) {absent}")
    if flow is None:
        if rgb.ndim != 2:
            raise FeatureStoreError(f"{path}: rgb {rgb.shape} must be T x D")
        return FeatureFile(str(attrs["video_id"]), rgb.astype(np.float32), None, attrs)
    if rgb.ndim != 2 or flow.ndim != 2 or rgb.shape[0] != flow.shape[0]:
        raise FeatureStoreError(f"{path}: rgb {rgb.shape} and flow {flow.shape} must be T x D with equal T")
    return FeatureFile(str(attrs["video_id"]), rgb.astype(np.float32), flow.astype(np.float32), attrs)


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.generic):
        return v.item()
    return v


class FeatureStore(Mapping[str, np.ndarray]):
    """A directory of feature files seen as ``video_id -> joint (T x 2D, or T x D RGB-only) array``,
    loaded lazily.

    This is the Mapping HAM-Net training and localization take, so they stay free of h5py.
    """

    def __init__(self, store_dir: str | os.PathLike, video_ids: list[str] | None = None):
        self.root = Path(store_dir)
        if video_ids is None:
            video_ids = sorted(p.stem for p in self.root.glob("*.h5"))
        self.video_ids = list(video_ids)

    def __getitem__(self, video_id: str) -> np.ndarray:
        if video_id not in self.video_ids:
            raise KeyError(video_id)
        return read_features(feature_path(self.root, video_id)).joint()

    def record(self, video_id: str) -> FeatureFile:
        return read_features(feature_path(self.root, video_id))

    def attrs(self, video_id: str) -> dict[str, Any]:
        """One file's attributes, without reading its arrays."""
        with h5py.File(feature_path(self.root, video_id), "r") as f:
            return {k: _plain(v) for k, v in f.attrs.items()}

    def seconds_per_snippet(self, video_id: str) -> float:
        """How many seconds one feature row covers: frames_per_snippet / fps of that file."""
        a = self.attrs(video_id)
        return float(a["frames_per_snippet"]) / float(a["fps"])

    def random_backbone_videos(self, video_ids: Sequence[str]) -> list[str]:
        """The videos whose features came from an untrained (seeded random) backbone."""
        return [v for v in video_ids if bool(self.attrs(v).get("random_backbone", False))]

    def __iter__(self) -> Iterator[str]:
        return iter(self.video_ids)

    def __len__(self) -> int:
        return len(self.video_ids)

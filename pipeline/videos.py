"""The video set of a run: which files are videos, their ids, and their per-video records.

A per-video stage (flow, features) writes an *outcome record* ``<id>.json`` last and
atomically: ``status: ok`` with the data file beside it, or ``status: failed`` with the reason
when the video is bad input. The record holds the source file's size and mtime, so a replaced
video makes its records stale and it is extracted again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from core.atomic import read_json
from storage.featstore import assign_video_ids

# File name extensions taken as videos. Other files in the directory are listed in the
# summary as skipped (never silently ignored) but do not fail the run.
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".flv",
     ".wmv", ".ogv", ".3gp", ".ts", ".mts", ".m2ts", ".vob"}
)  # fmt: skip


def is_video_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in VIDEO_EXTENSIONS


def discover_videos(video_dir: str | os.PathLike) -> dict[str, str]:
    """``{file name: video id}`` of every video file directly inside ``video_dir``, ordered by id.

    Raises ``FileNotFoundError`` naming the folder when it is missing or holds no video.
    """
    p = Path(video_dir)
    if not p.is_dir():
        raise FileNotFoundError(f"--video-dir {p}: not a directory")
    names = [f.name for f in p.iterdir() if is_video_file(f)]
    if not names:
        raise FileNotFoundError(f"--video-dir {p}: no video files (extensions {sorted(VIDEO_EXTENSIONS)})")
    ids = assign_video_ids(names)
    return dict(sorted(ids.items(), key=lambda kv: kv[1]))


def skipped_files(video_dir: str | os.PathLike) -> list[tuple[str, str]]:
    """Files in ``video_dir`` that are not treated as videos, each with the reason."""
    p = Path(video_dir)
    if not p.is_dir():
        return []
    out = []
    for f in sorted(p.iterdir()):
        if not f.is_file():
            continue
        if f.name.startswith("."):
            out.append((f.name, "hidden file"))
        elif f.suffix.lower() not in VIDEO_EXTENSIONS:
            out.append((f.name, "extension not a known video type"))
    return out


def source_stat(path: Path) -> dict[str, int] | None:
    """Size and mtime of a source video: a changed file makes its records stale."""
    try:
        st = path.stat()
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """An outcome record, or None when absent or unreadable (then the stage is not done)."""
    try:
        rec = read_json(path)
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("status") in ("ok", "failed") else None


class AmbiguousVideoKey(ValueError):
    """A labels or ground-truth key names more than one video (``test`` for test.mp4 and test.avi)."""


def resolve_video_keys(
    keys: Iterable[str], videos: Mapping[str, str]
) -> tuple[dict[str, str], list[str], dict[str, list[str]]]:
    """Match table keys (labels, ground truth) to videos: ``(key -> id, unmatched, ambiguous)``.

    A key may be the file name (``a.mp4``), the video id, or the file's stem (``a``). The file
    name and the id are unique; a stem is not (``test.mp4`` and ``test.avi``), and picking one
    of the files would silently pair annotations with the wrong video, so a stem shared by
    several files is reported in ``ambiguous`` with the candidate file names.
    """
    exact: dict[str, str] = {}
    by_stem: dict[str, list[str]] = {}
    for name, vid in videos.items():
        exact[name] = vid
        exact.setdefault(vid, vid)
        by_stem.setdefault(Path(name).stem, []).append(name)
    matched: dict[str, str] = {}
    unmatched: list[str] = []
    ambiguous: dict[str, list[str]] = {}
    for key in keys:
        if key in exact:
            matched[key] = exact[key]
        elif len(by_stem.get(key, [])) == 1:
            matched[key] = videos[by_stem[key][0]]
        elif key in by_stem:
            ambiguous[key] = sorted(by_stem[key])
        else:
            unmatched.append(key)
    return matched, unmatched, ambiguous


def map_to_ids(table: Mapping[str, Any], videos: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Re-key a ``{video name: value}`` table (labels, ground truth) by video id.

    Keys resolve as in :func:`resolve_video_keys`. Returns the re-keyed table and the keys that
    match no video; raises :class:`AmbiguousVideoKey` naming the files when a key matches
    several (the preflight reports this before any work, pipeline/preflight.py).
    """
    matched, unmatched, ambiguous = resolve_video_keys(table, videos)
    if ambiguous:
        raise AmbiguousVideoKey(
            "; ".join(
                f"{k!r} matches {len(v)} videos ({', '.join(v)}); use the file name" for k, v in ambiguous.items()
            )
        )
    return {matched[k]: table[k] for k in matched}, unmatched


def ok_videos(index: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{video id: index entry}`` of the videos whose features were extracted."""
    return {v["video_id"]: v for v in index["videos"] if v["status"] == "ok"}

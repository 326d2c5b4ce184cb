"""Video-level labels: the weak supervision HAM-Net trains on.

The simple form is a CSV with a header ``video,label`` and one row per (video, label) pair; a
video with several actions has several rows. Labels can also be derived from temporal ground
truth in ActivityNet form (every class that has at least one segment in the video).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from core.atomic import atomic_open


class LabelsError(ValueError):
    """A labels file is malformed; the message names the file and the line."""


def read_labels_csv(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read ``video,label`` rows into ``{video: [labels in first-seen order]}``.

    Duplicate rows are merged. A video listed with an empty label is kept with no labels
    (a background-only video), so it is not silently dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelsError(f"{path}: labels file not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise LabelsError(
            f"{path}:{line}: not UTF-8 text (byte {e.object[e.start]:#04x}); save the file as UTF-8"
        ) from e
    out: dict[str, list[str]] = {}
    with io.StringIO(text, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise LabelsError(f"{path}: empty file; expected a header 'video,label'")
        cols = [h.strip().lower() for h in header]
        if "video" not in cols or "label" not in cols:
            hint = ""
            if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
                hint = " (columns must be separated by commas, not ';', tabs or '|')"
            elif len(header) == 2:
                hint = " (the first line must be the header 'video,label')"
            raise LabelsError(f"{path}: header must contain 'video' and 'label' columns, got {header}{hint}")
        iv, il = cols.index("video"), cols.index("label")
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) <= max(iv, il):
                raise LabelsError(f"{path}:{lineno}: expected columns video,label, got {row}")
            video, label = row[iv].strip(), row[il].strip()
            if not video:
                raise LabelsError(f"{path}:{lineno}: empty video name")
            labels = out.setdefault(video, [])
            if label and label not in labels:
                labels.append(label)
    if not out:
        raise LabelsError(f"{path}: no rows after the header")
    return out


def write_labels_csv(path: str | os.PathLike, labels: Mapping[str, Sequence[str]]) -> Path:
    """Write labels atomically, videos sorted; a video with no labels gets one empty-label row."""
    with atomic_open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["video", "label"])
        for video in sorted(labels):
            for label in labels[video] or [""]:
                w.writerow([video, label])
    return Path(path)


def class_list(labels: Mapping[str, Sequence[str]]) -> list[str]:
    """All classes that occur, sorted (the order of the classifier's outputs)."""
    return sorted({c for ls in labels.values() for c in ls})

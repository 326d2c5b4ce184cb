"""Writing and reading detections: per-video CSV and the ActivityNet results JSON.

CSV columns are those of the official evaluator: ``video-id,t-start,t-end,label,score``
(seconds). The JSON is the ActivityNet results form ``{"version", "results": {video: [{"label",
"score", "segment": [start, end]}]}, "external_data"}``; all three keys are required by the
official evaluator. Both writers are atomic (temporary file in the same folder, then rename).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core.atomic import write_text_atomic
from hamnet.localize import Segment

CSV_COLUMNS = ("video-id", "t-start", "t-end", "label", "score")


class ResultsError(ValueError):
    """A results file is malformed; the message names the file and what is wrong."""


def write_segments_csv(path: str | os.PathLike, video_id: str, segments: Sequence[Segment]) -> Path:
    """One video's detections as CSV (header always written, so no detections -> header only)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for s in segments:
        w.writerow([video_id, repr(float(s.t_start)), repr(float(s.t_end)), s.label, repr(float(s.score))])
    return write_text_atomic(Path(path), buf.getvalue())


def read_segments_csv(path: str | os.PathLike) -> dict[str, list[Segment]]:
    """Read a detections CSV (one or several videos) into ``{video: [Segment]}``."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: no such file")
    out: dict[str, list[Segment]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or any(c not in reader.fieldnames for c in CSV_COLUMNS):
            raise ResultsError(f"{path}: header must contain {list(CSV_COLUMNS)}, got {reader.fieldnames}")
        for lineno, row in enumerate(reader, start=2):
            try:
                seg = Segment(float(row["t-start"]), float(row["t-end"]), row["label"], float(row["score"]))
            except (TypeError, ValueError) as e:
                raise ResultsError(f"{path}:{lineno}: bad row {row} ({e})") from None
            out.setdefault(row["video-id"], []).append(seg)
    return out


def results_to_dict(results: Mapping[str, Sequence[Segment]], version: str = "HAM-Net") -> dict[str, Any]:
    """The ActivityNet results form of ``{video: [Segment]}`` (every video kept, even without detections)."""
    return {
        "version": version,
        "results": {
            vid: [
                {"label": s.label, "score": float(s.score), "segment": [float(s.t_start), float(s.t_end)]} for s in segs
            ]
            for vid, segs in results.items()
        },
        "external_data": {},
    }


def write_results_json(
    path: str | os.PathLike, results: Mapping[str, Sequence[Segment]], version: str = "HAM-Net"
) -> Path:
    """Write ``{video: [Segment]}`` as an ActivityNet results JSON, atomically."""
    return write_text_atomic(Path(path), json.dumps(results_to_dict(results, version), indent=1) + "\n")


def read_results_json(path: str | os.PathLike) -> dict[str, list[Segment]]:
    """Read an ActivityNet results JSON into ``{video: [Segment]}``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultsError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ResultsError(f"{path}: not an ActivityNet results file (needs a 'results' mapping)")
    out: dict[str, list[Segment]] = {}
    for vid, preds in data["results"].items():
        segs = []
        for i, p in enumerate(preds):
            try:
                (t0, t1), label, score = p["segment"], p["label"], p["score"]
                segs.append(Segment(float(t0), float(t1), str(label), float(score)))
            except (KeyError, TypeError, ValueError) as e:
                raise ResultsError(f"{path}: results[{vid!r}][{i}] is malformed ({e!r}): {p}") from None
        out[vid] = segs
    return out

"""The ActivityNet ground-truth form every stage shares, and what "Ambiguous" means in it.

Ground truth everywhere in this project (THUMOS14 and ActivityNet importers, the demo, the
evaluator, the report) is one JSON form::

    {"database": {video_id: {"subset": "test", "duration": 12.3,
                             "annotations": [{"segment": [t0, t1], "label": "HighJump"}, ...]}}}

``Ambiguous`` is THUMOS14's label for intervals the annotators could not decide. It is never a
class and never a video-level label: :func:`video_labels` drops it, training never sees it, and
only the evaluator's ``thumos14`` mode uses it (a false positive inside an Ambiguous interval is
not counted, as in the official kit). This module is the one place that rule is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

AMBIGUOUS = "Ambiguous"


class AnnotationError(ValueError):
    """An annotation file is missing or malformed; the message names the file."""


def validate_ground_truth(gt: Mapping[str, Any], *, source: str = "<ground truth>") -> None:
    """Check the ActivityNet ground-truth form; raises AnnotationError naming the first bad entry."""
    if not isinstance(gt, Mapping) or not isinstance(gt.get("database"), Mapping):
        raise AnnotationError(f"{source}: expected a top-level 'database' mapping")
    for vid, e in gt["database"].items():
        if not isinstance(e, Mapping):
            raise AnnotationError(f"{source}: video {vid!r}: entry is not a mapping")
        if "annotations" not in e:
            raise AnnotationError(f"{source}: video {vid!r}: missing 'annotations'")
        if "subset" in e and not isinstance(e["subset"], str):
            raise AnnotationError(f"{source}: video {vid!r}: 'subset' must be a string")
        if not isinstance(e["annotations"], list):
            raise AnnotationError(f"{source}: video {vid!r}: 'annotations' must be a list")
        for i, a in enumerate(e["annotations"]):
            if not isinstance(a, Mapping) or "segment" not in a or "label" not in a:
                raise AnnotationError(f"{source}: video {vid!r} annotation {i}: needs 'segment' and 'label'")
            seg = a["segment"]
            if not isinstance(seg, (list, tuple)) or len(seg) != 2:
                raise AnnotationError(f"{source}: video {vid!r} annotation {i}: segment must be [start, end]")


def read_ground_truth_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ground-truth JSON written by :func:`write_ground_truth_json` (or any in that form)."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: ground-truth file not found")
    try:
        gt = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path}: not valid JSON ({e})") from e
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from e
    except (ValueError, RecursionError) as e:  # a 5000-digit number, nesting deeper than Python's stack
        raise AnnotationError(f"{path}: JSON too large or too deeply nested to read ({type(e).__name__})") from e
    validate_ground_truth(gt, source=str(path))
    return gt


def video_labels(gt: Mapping[str, Any], subset: str | None = None) -> dict[str, list[str]]:
    """Video-level labels (weak supervision) of every video, or of one subset; never Ambiguous.

    A video whose only annotations are Ambiguous gets an empty list: it stays in the table
    (nothing silently dropped) and trains as a background-only video.
    """
    out: dict[str, list[str]] = {}
    for vid, e in gt["database"].items():
        if subset is not None and e.get("subset") != subset:
            continue
        out[vid] = sorted({a["label"] for a in e["annotations"] if a["label"] != AMBIGUOUS})
    return out

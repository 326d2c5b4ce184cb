"""Which predictions the report draws, and where, so that nothing is drawn on top of anything.

Localization keeps every proposal after Gaussian Soft-NMS (REFERENCE section 2): that is what
the evaluator should see, but near-identical decayed duplicates drawn together read as one
muddy bar. The report therefore applies a display-only rule (:func:`display_predictions`) and
packs what remains into lanes (:func:`pack_lanes`): one group of lanes per class, and inside a
class a new lane whenever two kept segments overlap in time. Bars in one lane never overlap,
so labels confined to their bars never overlap either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.report_config import ReportConfig


def segment_tiou(a: Sequence[float], b: Sequence[float]) -> float:
    """Temporal IoU of two [start, end] intervals in seconds (0 for disjoint or empty ones)."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def display_predictions(segments: Sequence[Mapping[str, Any]], cfg: ReportConfig) -> list[dict[str, Any]]:
    """The predictions to draw: per class, the best one always, others with score >= min_score;
    then greedy NMS at nms_tiou and the top N.

    The best prediction of a class is kept even below ``min_score``: outer-inner contrast scores
    can be small or negative for a correct segment, and a timeline showing nothing where the
    evaluator found a hit misleads. Returns copies sorted by class, then start time. Greedy NMS
    (best first, drop what overlaps a kept one by tIoU >= nms_tiou) is the plain kind on
    purpose: it is for the eye only.
    """
    by_class: dict[str, list[Mapping[str, Any]]] = {}
    for p in segments:
        by_class.setdefault(str(p["label"]), []).append(p)
    out: list[dict[str, Any]] = []
    for label in sorted(by_class):
        ranked = sorted(by_class[label], key=lambda q: -float(q["score"]))
        candidates = ranked[:1] + [p for p in ranked[1:] if float(p["score"]) >= cfg.min_score]
        kept: list[Mapping[str, Any]] = []
        for p in candidates:
            if len(kept) >= cfg.top_per_class:
                break
            if all(segment_tiou(p["segment"], k["segment"]) < cfg.nms_tiou for k in kept):
                kept.append(p)
        out += [dict(p) for p in sorted(kept, key=lambda q: float(q["segment"][0]))]
    return out


def pack_lanes(intervals: Sequence[Sequence[float]]) -> list[int]:
    """Lane index per interval (first fit in start order): intervals in one lane never overlap.

    Touching intervals (one ends where the next starts) may share a lane. Uses the minimum
    number of lanes, the largest number of intervals covering one instant.
    """
    order = sorted(range(len(intervals)), key=lambda i: (intervals[i][0], intervals[i][1]))
    lane_end: list[float] = []
    lanes = [0] * len(intervals)
    for i in order:
        s, e = intervals[i]
        for k, end in enumerate(lane_end):
            if s >= end:
                lanes[i], lane_end[k] = k, e
                break
        else:
            lanes[i] = len(lane_end)
            lane_end.append(e)
    return lanes

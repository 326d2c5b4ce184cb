"""Temporal action detection mAP (and video classification mAP), vectorised with numpy.

Two evaluators, selected with ``mode`` (docs/evaluation.md has the full semantics and every
choice made where the official tools are silent or broken):

* ``"activitynet"`` (default) reproduces the official ActivityNet detection evaluator, which is
  what HAM-Net and most weakly-supervised papers report: per class, predictions in descending
  score order each take the highest-tIoU still-unmatched ground truth of that class in the same
  video with tIoU >= threshold (inclusive), else they are false positives; interpolated
  VOC-style AP; mAP over the classes present in the ground truth.
* ``"thumos14"`` reproduces the THUMOS14 evaluation kit (TH14evalDet, updated version):
  ground-truth-driven matching (each ground truth, in file order, takes its best free detection
  with overlap strictly > threshold), non-interpolated AP, and unmatched detections that
  overlap an ``Ambiguous`` interval are not counted as false positives.

The greedy matching is inherently sequential, so it is computed as the equivalent
"locally dominant edge" matching: candidate (prediction, ground truth) pairs are listed in the
order the sequential algorithm would consider them; in each round every pair that is the first
live pair of both its endpoints is accepted, and the pairs touching matched endpoints die. For a
strict total order of pairs this yields exactly the sequential greedy result, with a handful of
vectorised rounds instead of a Python loop over predictions.

Thresholds are exact decimals: ``0.3`` means the double nearest to 3/10, whether it is given as
the string ``"0.3"`` or as a float that drifted (``0.30000000000000004`` from ``arange`` is
rounded back to 9 decimals, with a warning). Since tIoU is ``fl(inter / union)`` and rounding is
monotone, a tIoU that equals the threshold exactly in real arithmetic (e.g. 3 s over 10 s)
always passes ``>=`` and never passes ``>``.

CLI: ``python -m hamnet.evaluate GROUND_TRUTH.json PREDICTIONS.json --tiou-thresholds 0.1 0.5
--output metrics.json [--mode thumos14] [--subset test]``; bad input exits 2 with one line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np

from core.activitynet import AMBIGUOUS, video_labels
from core.atomic import write_json_atomic  # noqa: F401 -- part of this module's API

MODES = ("activitynet", "thumos14")
AMBIGUOUS_LABEL = AMBIGUOUS  # the one definition: core/activitynet.py
ACTIVITYNET_TIOU_THRESHOLDS = ("0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85", "0.9", "0.95")
THUMOS14_TIOU_THRESHOLDS = ("0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7")

# Thresholds are snapped to this many decimals: enough for any threshold a person types,
# coarse enough to undo float drift such as 0.1 * 3 = 0.30000000000000004.
_THRESHOLD_DECIMALS = 9
# Candidate pairs are generated in chunks of about this many, to bound memory on inputs where
# a video holds thousands of predictions and ground truths of one class.
_PAIR_CHUNK = 1 << 22
# Below this many contested pairs the remaining greedy matching runs as a plain loop; above it
# vectorised rounds are cheaper.
_SEQUENTIAL_TAIL = 256
_MAX_LISTED = 10


class EvaluationInputError(ValueError):
    """Ground truth or predictions are malformed; the message names the source and the problem."""


@dataclass
class DetectionResult:
    """Detection metrics. AP values are fractions in [0, 1] (``format_table`` prints percent).

    ``ap[c, k]`` is the AP of ``classes[c]`` at ``tiou_thresholds[k]``; ``map[k]`` its mean over
    the classes; ``average_map`` the mean of ``map`` over thresholds. ``threshold_labels`` are the
    thresholds as the exact decimal strings used for keys in :meth:`to_dict`.
    """

    tiou_thresholds: np.ndarray
    map: np.ndarray
    average_map: float
    classes: list[str]
    ap: np.ndarray
    warnings: list[str]
    mode: str = "activitynet"
    subset: str | None = None
    threshold_labels: list[str] = field(default_factory=list)
    num_ground_truth: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    num_predictions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    num_videos: int = 0
    classification_map: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: thresholds keyed by their decimal strings, AP per class, warnings."""
        labels = self.threshold_labels or [repr(float(t)) for t in self.tiou_thresholds]
        out: dict[str, Any] = {
            "mode": self.mode,
            "subset": self.subset,
            "tiou_thresholds": [float(t) for t in self.tiou_thresholds],
            "mAP": {lab: float(v) for lab, v in zip(labels, self.map)},
            "average_mAP": float(self.average_map),
            "AP": {c: {lab: float(v) for lab, v in zip(labels, row)} for c, row in zip(self.classes, self.ap)},
            "num_ground_truth": {c: int(n) for c, n in zip(self.classes, self.num_ground_truth)},
            "num_predictions": {c: int(n) for c, n in zip(self.classes, self.num_predictions)},
            "num_videos": int(self.num_videos),
            "warnings": list(self.warnings),
        }
        if self.classification_map is not None:
            out["classification_mAP"] = float(self.classification_map)
        return out


# ----------------------------------------------------------------------------------------------
# Input parsing and validation


def load_json(path: str | os.PathLike, kind: str) -> dict[str, Any]:
    """Read a JSON file of ``kind`` ``"ground_truth"``, ``"predictions"`` or ``"video_scores"``.

    Checks only the top level (``database`` / ``results`` mapping); the entries are validated by
    :func:`evaluate_detection`. Raises :class:`EvaluationInputError` naming the file.
    """
    kinds = {"ground_truth": "database", "predictions": "results", "video_scores": None}
    if kind not in kinds:
        raise ValueError(f"kind must be one of {sorted(kinds)}, got {kind!r}")
    path = Path(path)
    if not path.is_file():
        raise EvaluationInputError(f"{path}: {kind.replace('_', ' ')} file not found")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as e:
        raise EvaluationInputError(f"{path}: malformed JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except (UnicodeDecodeError, OSError) as e:
        raise EvaluationInputError(f"{path}: cannot read: {e}") from None
    except (ValueError, RecursionError) as e:  # a 5000-digit number; nesting deeper than the stack
        raise EvaluationInputError(f"{path}: JSON too large or too deeply nested ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise EvaluationInputError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    key = kinds[kind]
    if key is not None:
        if key not in data:
            form = "ActivityNet ground truth" if key == "database" else "ActivityNet results"
            raise EvaluationInputError(f"{path}: missing top-level key {key!r} (expected {form} form)")
        if not isinstance(data[key], dict):
            raise EvaluationInputError(
                f"{path}: {key!r} must be an object keyed by video id, got {type(data[key]).__name__}"
            )
    return data


def _parse_thresholds(values: Sequence[Any], warnings: list[str]) -> tuple[np.ndarray, list[str]]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise ValueError(f"tiou_thresholds must be a sequence of numbers, got {values!r}")
    quantum = Decimal(1).scaleb(-_THRESHOLD_DECIMALS)
    decimals: list[Decimal] = []
    for v in values:
        if isinstance(v, Decimal):
            d = v
        elif isinstance(v, str):
            try:
                d = Decimal(v.strip())
            except InvalidOperation:
                raise ValueError(f"tIoU threshold {v!r} is not a number") from None
        elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)):
            d = Decimal(repr(float(v)))
        else:
            raise ValueError(f"tIoU threshold {v!r} is not a number")
        if not d.is_finite() or not (0 < d <= 1):
            raise ValueError(f"tIoU threshold {v!r} must be in (0, 1]")
        exponent = d.as_tuple().exponent
        assert isinstance(exponent, int)  # d is finite, so not 'n', 'N' or 'F'
        if exponent < -_THRESHOLD_DECIMALS:
            q = d.quantize(quantum)
            warnings.append(
                f"tIoU threshold {v!r} read as {format(q.normalize(), 'f')} "
                f"(rounded to {_THRESHOLD_DECIMALS} decimals; thresholds are exact decimals)"
            )
            d = q
        decimals.append(d.normalize())
    if not decimals:
        raise ValueError("tiou_thresholds is empty")
    dup = [format(d, "f") for d, n in Counter(decimals).items() if n > 1]
    if dup:
        raise ValueError(f"tIoU thresholds repeated: {', '.join(dup)}")
    labels = [format(d, "f") for d in decimals]
    # float(str) gives the double nearest to the decimal: the same double float("0.3") gives.
    return np.array([float(s) for s in labels], dtype=np.float64), labels


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _time(x: Any) -> float:
    """A segment bound: a number or a numeric string (some public ground truth stores strings)."""
    if _is_number(x) or isinstance(x, str):
        return float(x)
    raise TypeError


def _check_segment(seg: Any, where: str) -> tuple[float, float]:
    if not isinstance(seg, (list, tuple, np.ndarray)) or len(seg) != 2:
        raise EvaluationInputError(f"{where}: 'segment' must be [start, end], got {seg!r}")
    try:
        s, e = _time(seg[0]), _time(seg[1])
    except (TypeError, ValueError):
        raise EvaluationInputError(f"{where}: segment {seg!r} is not two numbers") from None
    if not (math.isfinite(s) and math.isfinite(e)):
        raise EvaluationInputError(f"{where}: segment {seg!r} is not finite")
    if s < 0:
        raise EvaluationInputError(f"{where}: segment {seg!r} starts before 0 s (negative time)")
    if e < s:
        raise EvaluationInputError(f"{where}: segment {seg!r} ends before it starts (reversed)")
    return s, e


@dataclass
class _GroundTruth:
    videos: list[str]
    classes: list[str]
    video: np.ndarray
    cls: np.ndarray
    start: np.ndarray
    end: np.ndarray
    amb_video: np.ndarray
    amb_start: np.ndarray
    amb_end: np.ndarray


@dataclass
class _Predictions:
    videos: list[str]  # GT videos first (same indices), then videos absent from the ground truth
    video: np.ndarray
    cls: np.ndarray
    start: np.ndarray
    end: np.ndarray
    score: np.ndarray


def _parse_ground_truth(gt: Any, *, subset: str | None, mode: str, source: str, warnings: list[str]) -> _GroundTruth:
    if not isinstance(gt, Mapping) or "database" not in gt:
        raise EvaluationInputError(
            f"{source}: missing top-level key 'database' (expected ActivityNet ground truth form)"
        )
    db = gt["database"]
    if not isinstance(db, Mapping):
        raise EvaluationInputError(f"{source}: 'database' must be an object keyed by video id")
    videos: list[str] = []
    rows: list[tuple[int, str, float, float]] = []
    amb: list[tuple[int, float, float]] = []
    subsets_seen: Counter[str] = Counter()
    zero_len = 0
    for vid, entry in db.items():
        if not isinstance(entry, Mapping):
            raise EvaluationInputError(f"{source}: database[{vid!r}] must be an object, got {type(entry).__name__}")
        if subset is not None:
            if "subset" not in entry:
                raise EvaluationInputError(
                    f"{source}: database[{vid!r}] has no 'subset' key, cannot select subset {subset!r}"
                )
            subsets_seen[str(entry["subset"])] += 1
            if entry["subset"] != subset:
                continue
        anns = entry.get("annotations")
        if not isinstance(anns, list):
            raise EvaluationInputError(f"{source}: database[{vid!r}] needs an 'annotations' list, got {anns!r}")
        v = len(videos)
        videos.append(vid)
        for i, ann in enumerate(anns):
            where = f"{source}: database[{vid!r}]['annotations'][{i}]"
            if not isinstance(ann, Mapping) or "segment" not in ann or "label" not in ann:
                raise EvaluationInputError(f"{where}: needs keys 'segment' and 'label', got {ann!r}")
            label = ann["label"]
            if not isinstance(label, str) or not label:
                raise EvaluationInputError(f"{where}: 'label' must be a non-empty string, got {label!r}")
            s, e = _check_segment(ann["segment"], where)
            if label == AMBIGUOUS_LABEL:
                amb.append((v, s, e))
                continue
            zero_len += s == e
            rows.append((v, label, s, e))
    if subset is not None and not videos:
        found = ", ".join(f"{k!r} ({n})" for k, n in sorted(subsets_seen.items())) or "none"
        raise EvaluationInputError(f"{source}: no video in subset {subset!r}; subsets present: {found}")
    if not rows:
        where = f" in subset {subset!r}" if subset is not None else ""
        raise EvaluationInputError(f"{source}: no ground-truth segments{where}; nothing to evaluate")
    if amb and mode == "activitynet":
        warnings.append(
            f"{source}: {len(amb)} '{AMBIGUOUS_LABEL}' annotations ignored (not a class; only the "
            f"thumos14 mode uses them)"
        )
        amb = []
    if zero_len:
        warnings.append(
            f"{source}: {zero_len} ground-truth segments have zero length; they count as ground truth "
            f"but no prediction can match them (their tIoU is defined as 0)"
        )
    classes = sorted({r[1] for r in rows})
    index = {c: i for i, c in enumerate(classes)}
    f64 = np.float64
    return _GroundTruth(
        videos=videos,
        classes=classes,
        video=np.array([r[0] for r in rows], np.int64),
        cls=np.array([index[r[1]] for r in rows], np.int64),
        start=np.array([r[2] for r in rows], f64),
        end=np.array([r[3] for r in rows], f64),
        amb_video=np.array([a[0] for a in amb], np.int64),
        amb_start=np.array([a[1] for a in amb], f64),
        amb_end=np.array([a[2] for a in amb], f64),
    )


def _bad_prediction(source: str, vid: str, items: Any) -> EvaluationInputError:
    """Locate and describe the first malformed entry of one video's prediction list."""
    for i, it in enumerate(items):
        where = f"{source}: results[{vid!r}][{i}]"
        if not isinstance(it, Mapping):
            return EvaluationInputError(f"{where}: expected an object with label, score, segment, got {it!r}")
        missing = [k for k in ("label", "score", "segment") if k not in it]
        if missing:
            return EvaluationInputError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")
        if not isinstance(it["label"], str):
            return EvaluationInputError(f"{where}: 'label' must be a string, got {it['label']!r}")
        score = it["score"]
        if not _is_number(score):
            return EvaluationInputError(f"{where}: 'score' must be a number, got {score!r}")
        if not math.isfinite(score):
            return EvaluationInputError(f"{where}: 'score' must be finite, got {score!r}")
        _check_segment(it["segment"], where)  # raises with the precise reason
    return EvaluationInputError(f"{source}: results[{vid!r}] is malformed")


def _parse_predictions(
    pred: Any, gt: _GroundTruth, *, source: str, ignore_other_videos: bool, warnings: list[str]
) -> _Predictions:
    if not isinstance(pred, Mapping) or "results" not in pred:
        raise EvaluationInputError(f"{source}: missing top-level key 'results' (expected ActivityNet results form)")
    results = pred["results"]
    if not isinstance(results, Mapping):
        raise EvaluationInputError(f"{source}: 'results' must be an object keyed by video id")
    video_index = {v: i for i, v in enumerate(gt.videos)}
    videos = list(gt.videos)
    vids: list[int] = []
    counts: list[int] = []
    labels: list[Any] = []
    scores: list[Any] = []
    segs: list[Any] = []
    starts: list[Any] = []
    ends: list[Any] = []
    other_videos = other_preds = 0
    # Fast path: gather with comprehensions (the 2-tuple unpacking checks each segment's length);
    # on failure, re-scan that one video for a precise message.
    for vid, items in results.items():
        if not isinstance(items, list):
            raise EvaluationInputError(
                f"{source}: results[{vid!r}] must be a list of predictions, got {type(items).__name__}"
            )
        if not items:
            continue
        v = video_index.get(vid)
        if v is None:
            other_videos += 1
            other_preds += len(items)
            if ignore_other_videos:
                continue
            v = video_index[vid] = len(videos)
            videos.append(vid)
        try:
            lab = [it["label"] for it in items]
            sco = [it["score"] for it in items]
            seg = [it["segment"] for it in items]
            sta = [a for a, _ in seg]
            fin = [b for _, b in seg]
        except (KeyError, TypeError, ValueError):
            raise _bad_prediction(source, vid, items) from None
        labels += lab
        scores += sco
        segs += seg
        starts += sta
        ends += fin
        vids.append(v)
        counts.append(len(items))
    n = len(scores)
    flat_video = np.repeat(np.array(vids, np.int64), np.array(counts, np.int64))

    def locate(flat: int) -> EvaluationInputError:
        vid = videos[flat_video[flat]]
        return _bad_prediction(source, vid, results[vid])

    plain = {float, int}
    if not set(map(type, scores)) <= plain:
        bad = next((i for i, x in enumerate(scores) if not _is_number(x)), None)
        if bad is not None:
            raise locate(bad)
    score = np.array(scores, np.float64)
    if set(map(type, starts)) <= plain and set(map(type, ends)) <= plain:
        start, end = np.array(starts, np.float64), np.array(ends, np.float64)
    else:  # numeric strings or numpy scalars: check one by one (also rejects e.g. a 2-character string)
        start, end = np.empty(n), np.empty(n)
        for i, sg in enumerate(segs):
            try:
                start[i], end[i] = _check_segment(sg, "")
            except EvaluationInputError:
                raise locate(i) from None
    bad_mask = ~np.isfinite(score) | ~np.isfinite(start) | ~np.isfinite(end) | (start < 0) | (end < start)
    if bad_mask.any():
        raise locate(int(np.flatnonzero(bad_mask)[0]))

    index = {c: i for i, c in enumerate(gt.classes)}
    try:
        cls = np.fromiter((index.get(lab, -1) for lab in labels), np.int64, n)
    except TypeError:
        raise locate(next(i for i, lab in enumerate(labels) if not isinstance(lab, str))) from None
    unknown = cls < 0
    if unknown.any():
        idx = np.flatnonzero(unknown)
        for k in idx:
            if not isinstance(labels[k], str):
                raise locate(int(k))
        names = Counter(labels[i] for i in idx)
        listed = ", ".join(f"{k!r} ({c})" for k, c in names.most_common(_MAX_LISTED))
        more = f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else ""
        warnings.append(
            f"{source}: ignored {idx.size} predictions whose {len(names)} labels are absent from the "
            f"evaluated ground truth: {listed}{more}"
        )
    if other_preds:
        fate = "ignored (ignore_other_videos)" if ignore_other_videos else "counted as false positives"
        warnings.append(
            f"{source}: {other_preds} predictions on {other_videos} videos absent from the evaluated "
            f"ground truth are {fate}"
        )
    zero = int(((end == start) & ~unknown).sum())
    if zero:
        warnings.append(
            f"{source}: {zero} predictions have zero length; their tIoU with anything is 0, so they are false positives"
        )
    if n == 0 or unknown.all():
        warnings.append(f"{source}: no predictions to evaluate; every AP is 0")
    keep = ~unknown
    return _Predictions(
        videos=videos, video=flat_video[keep], cls=cls[keep], start=start[keep], end=end[keep], score=score[keep]
    )


# ----------------------------------------------------------------------------------------------
# Matching


def _candidate_pairs(gt: _GroundTruth, pr: _Predictions, overlap_fn, keep_fn):
    """The (prediction, ground truth) pairs of the same class and video whose overlap passes ``keep_fn``.

    ``keep_fn`` must reject overlap 0, so only intersecting pairs matter: within a (class, video)
    group, with ground truths sorted by start, a prediction [ps, pe] can only intersect those
    whose start lies in [ps - longest, pe) (``longest``: the group's longest ground truth). The
    range comes from ``searchsorted`` on exact integer keys (group rank, rank of the time among
    the distinct ground-truth starts), so the comparisons are exact float comparisons; the
    lower bound is widened by a microsecond, which can only add pairs that the exact overlap
    test then filters. Returns prediction indices, ground-truth indices and overlaps.
    """
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
    if not pr.score.size:
        return empty
    n_vid = len(pr.videos)
    gkey = gt.cls * n_vid + gt.video
    groups, group_of = np.unique(gkey, return_inverse=True)
    group_of = group_of.ravel()
    longest = np.zeros(groups.size)
    np.maximum.at(longest, group_of, gt.end - gt.start)
    starts = np.unique(gt.start)
    width = starts.size + 1
    g_int = group_of * width + np.searchsorted(starts, gt.start)
    g_order = np.argsort(g_int, kind="stable")
    g_int = g_int[g_order]
    pkey = pr.cls * n_vid + pr.video
    gi = np.minimum(np.searchsorted(groups, pkey), groups.size - 1)
    in_group = groups[gi] == pkey
    # searchsorted(starts, q, "left") = number of distinct starts < q, so "rank < that" <=> start < q.
    hi = np.searchsorted(g_int, gi * width + np.searchsorted(starts, pr.end, "left"), "left")
    lo = np.searchsorted(g_int, gi * width + np.searchsorted(starts, pr.start - longest[gi] - 1e-6, "left"), "left")
    cnt = np.where(in_group, np.maximum(hi - lo, 0), 0)
    has = np.flatnonzero(cnt)
    lo, cnt = lo[has], cnt[has]
    ends = np.cumsum(cnt)
    parts = []
    begin = 0
    while begin < has.size:
        base = ends[begin - 1] if begin else 0
        stop = max(begin + 1, int(np.searchsorted(ends, base + _PAIR_CHUNK, "right")))
        c = cnt[begin:stop]
        total = int(c.sum())
        first = np.cumsum(c) - c
        p = np.repeat(has[begin:stop], c)
        g = g_order[np.repeat(lo[begin:stop] - first, c) + np.arange(total)]
        ov = overlap_fn(pr.start[p], pr.end[p], gt.start[g], gt.end[g])
        k = keep_fn(ov)
        parts.append((p[k], g[k], ov[k]))
        begin = stop
    if not parts:
        return empty
    return tuple(np.concatenate(x) for x in zip(*parts))


def _tiou(ps, pe, gs, ge):
    """ActivityNet tIoU, same float operations as the official segment_iou; 0 when the union is 0."""
    inter = np.maximum(np.minimum(pe, ge) - np.maximum(ps, gs), 0.0)
    union = (ge - gs) + (pe - ps) - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def _kit_overlap(ps, pe, gs, ge):
    """THUMOS14-kit overlap: intersection over the hull of both intervals, 0 unless they intersect."""
    iw = np.minimum(pe, ge) - np.maximum(ps, gs)
    hull = np.maximum(pe, ge) - np.minimum(ps, gs)
    out = np.zeros_like(iw)
    np.divide(iw, hull, out=out, where=iw > 0)
    return out


def _greedy_matching(a: np.ndarray, b: np.ndarray, n_a: int, n_b: int) -> np.ndarray:
    """Mask of the pairs ``(a[i], b[i])`` (listed best-first) that sequential greedy matching accepts.

    Sequential greedy walks the list and accepts a pair when both endpoints are still free. The
    same set is reached by rounds: a pair that is the first live pair of both its endpoints is
    accepted by the sequential walk too (everything before it is dead or elsewhere), so accept
    all such pairs at once, kill the pairs touching their endpoints, repeat.
    """
    n = a.size
    accepted = np.zeros(n, bool)
    used_a = np.zeros(n_a, bool)
    used_b = np.zeros(n_b, bool)
    first_a = np.empty(n_a, np.int64)
    first_b = np.empty(n_b, np.int64)
    live = np.arange(n)
    while live.size > _SEQUENTIAL_TAIL:
        la, lb = a[live], b[live]
        first_a[la] = n
        np.minimum.at(first_a, la, live)
        first_b[lb] = n
        np.minimum.at(first_b, lb, live)
        win = live[(first_a[la] == live) & (first_b[lb] == live)]
        accepted[win] = True
        used_a[a[win]] = True
        used_b[b[win]] = True
        live = live[~(used_a[la] | used_b[lb])]
    for i, x, y in zip(live.tolist(), a[live].tolist(), b[live].tolist()):
        if not used_a[x] and not used_b[y]:
            used_a[x] = used_b[y] = True
            accepted[i] = True
    return accepted


def _class_runs(order: np.ndarray, cls: np.ndarray, n_cls: int) -> tuple[np.ndarray, np.ndarray]:
    """``order`` regrouped by class (stable, so each class keeps the ranking) and the class bounds."""
    by_class = order[np.argsort(cls[order], kind="stable")]
    return by_class, np.searchsorted(cls[by_class], np.arange(n_cls + 1))


def _interpolated_ap(hits: np.ndarray, n_pos: int) -> float:
    """Official ActivityNet interpolated AP of one ranked list of hit flags.

    The official code pads precision [0, p, 0] and recall [0, r, 1], makes precision
    non-increasing from the right and sums (r[i] - r[i-1]) * p[i] where recall changes. Recall
    changes exactly at the true positives (and at the padding, whose precision is 0), and the
    running maximum from the right is reached at a true positive, because precision only rises
    there. So only true positives are needed: the j-th at rank r has precision j / r and recall
    j / n_pos, which are the same doubles the official cumulative sums give.
    """
    pos = np.flatnonzero(hits) + 1
    if not pos.size:
        return 0.0
    j = np.arange(1, pos.size + 1)
    prec = np.maximum.accumulate((j / pos)[::-1])[::-1]
    rec = j / n_pos
    step = rec.copy()
    step[1:] -= rec[:-1]
    # fsum is exactly rounded, so the result does not depend on summation order.
    return math.fsum((step * prec).tolist())


def _ranked(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Descending-score order, stable (equal scores keep file order), and each prediction's rank."""
    order = np.argsort(-score, kind="stable")
    rank = np.empty(score.size, np.int64)
    rank[order] = np.arange(score.size)
    return order, rank


def _activitynet_ap(gt: _GroundTruth, pr: _Predictions, thr: np.ndarray) -> np.ndarray:
    n_cls, n_thr, n_pred, n_gt = len(gt.classes), thr.size, pr.score.size, gt.cls.size
    ap = np.zeros((n_cls, n_thr))
    order, rank = _ranked(pr.score)
    t_min = thr.min()
    p, g, ov = _candidate_pairs(gt, pr, _tiou, lambda o: o >= t_min)
    # The order the official loop considers pairs: prediction rank, then tIoU descending, then
    # ground truth in file order (the official argsort leaves tIoU ties arbitrary).
    pair_order = np.lexsort((g, -ov, rank[p]))
    p, g, ov = p[pair_order], g[pair_order], ov[pair_order]
    hit = np.zeros((n_thr, n_pred), bool)
    for k, t in enumerate(thr):
        sel = ov >= t
        ps, gs = p[sel], g[sel]
        hit[k, ps[_greedy_matching(ps, gs, n_pred, n_gt)]] = True
    n_pos = np.bincount(gt.cls, minlength=n_cls)
    by_class, bounds = _class_runs(order, pr.cls, n_cls)
    for c in range(n_cls):
        idx = by_class[bounds[c] : bounds[c + 1]]
        for k in range(n_thr if idx.size else 0):
            ap[c, k] = _interpolated_ap(hit[k, idx], int(n_pos[c]))
    return ap


def _thumos_ap(gt: _GroundTruth, pr: _Predictions, thr: np.ndarray) -> np.ndarray:
    n_cls, n_thr, n_pred, n_gt = len(gt.classes), thr.size, pr.score.size, gt.cls.size
    ap = np.zeros((n_cls, n_thr))
    # The kit sorts each video's detections by descending score (stable), so overlap ties go to
    # the higher-scoring detection, then to the earlier one in the file.
    _, rank = _ranked(pr.score)
    t_min = thr.min()
    p, g, ov = _candidate_pairs(gt, pr, _kit_overlap, lambda o: o > t_min)
    # Ground truth drives: file order, then overlap descending, then detection rank.
    pair_order = np.lexsort((rank[p], -ov, g))
    p, g, ov = p[pair_order], g[pair_order], ov[pair_order]
    hit = np.zeros((n_thr, n_pred), bool)
    for k, t in enumerate(thr):
        sel = ov > t
        gs, ps = g[sel], p[sel]
        hit[k, ps[_greedy_matching(gs, ps, n_gt, n_pred)]] = True
    # Unmatched detections intersecting an Ambiguous interval of their video are dropped.
    amb = np.zeros(n_pred, bool)
    if gt.amb_video.size and n_pred:
        a_order = np.argsort(gt.amb_video, kind="stable")
        a_vid = gt.amb_video[a_order]
        lo = np.searchsorted(a_vid, pr.video, "left")
        cnt = np.searchsorted(a_vid, pr.video, "right") - lo
        pp = np.repeat(np.arange(n_pred), cnt)
        aa = a_order[np.repeat(lo - (np.cumsum(cnt) - cnt), cnt) + np.arange(int(cnt.sum()))]
        touch = np.minimum(pr.end[pp], gt.amb_end[aa]) - np.maximum(pr.start[pp], gt.amb_start[aa]) > 0
        amb[pp[touch]] = True
    # The kit concatenates videos in sorted-name order, then sorts by score (stable): ties go to
    # the video whose name sorts first, then to the higher-ranked detection within the video.
    names = pr.videos
    name_rank = np.empty(len(names), np.int64)
    name_rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    by_class, bounds = _class_runs(np.lexsort((rank, name_rank[pr.video], -pr.score)), pr.cls, n_cls)
    n_pos = np.bincount(gt.cls, minlength=n_cls)
    for c in range(n_cls):
        idx = by_class[bounds[c] : bounds[c + 1]]
        for k in range(n_thr if idx.size else 0):
            h = hit[k, idx]
            h = h[h | ~amb[idx]]
            # Non-interpolated: precision j / rank at the j-th true positive, summed, over n_pos.
            pos = np.flatnonzero(h) + 1
            ap[c, k] = math.fsum((np.arange(1, pos.size + 1) / pos).tolist()) / n_pos[c]
    return ap


# ----------------------------------------------------------------------------------------------
# Public API


def evaluate_detection(
    ground_truth: Mapping,
    predictions: Mapping,
    tiou_thresholds: Sequence[float | str],
    *,
    mode: str = "activitynet",
    subset: str | None = None,
    ignore_other_videos: bool = False,
    gt_source: str = "ground truth",
    pred_source: str = "predictions",
) -> DetectionResult:
    """Detection AP per class and threshold, mAP per threshold, and their average.

    Args:
        ground_truth: ActivityNet form ``{"database": {video: {"subset", "annotations": [{"segment", "label"}]}}}``.
            Annotations labelled ``"Ambiguous"`` are THUMOS14 ambiguous intervals (used by the
            thumos14 mode, ignored with a warning by the activitynet mode).
        predictions: results form ``{"results": {video: [{"label", "score", "segment"}]}}``.
        tiou_thresholds: thresholds as decimal strings or floats (read as exact decimals).
        mode: ``"activitynet"`` (official ActivityNet semantics) or ``"thumos14"`` (THUMOS14 kit).
        subset: evaluate only ground-truth videos whose ``subset`` equals this.
        ignore_other_videos: drop predictions on videos absent from the evaluated ground truth
            (another subset, unknown ids) instead of counting them as false positives, which is
            the official behaviour and the default; a warning gives the count either way.
        gt_source, pred_source: names used in error messages (the CLI passes the file paths).

    Raises :class:`EvaluationInputError` (a ``ValueError``) for malformed input, ``ValueError``
    for bad arguments. Predicted labels absent from the ground truth are ignored with a warning.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    warnings: list[str] = []
    thr, labels = _parse_thresholds(tiou_thresholds, warnings)
    gt = _parse_ground_truth(ground_truth, subset=subset, mode=mode, source=gt_source, warnings=warnings)
    pr = _parse_predictions(
        predictions, gt, source=pred_source, ignore_other_videos=ignore_other_videos, warnings=warnings
    )
    ap = _activitynet_ap(gt, pr, thr) if mode == "activitynet" else _thumos_ap(gt, pr, thr)
    n_cls = len(gt.classes)
    m = np.array([math.fsum(ap[:, k].tolist()) / n_cls for k in range(thr.size)])
    return DetectionResult(
        tiou_thresholds=thr,
        map=m,
        average_map=math.fsum(m.tolist()) / m.size,
        classes=list(gt.classes),
        ap=ap,
        warnings=warnings,
        mode=mode,
        subset=subset,
        threshold_labels=labels,
        num_ground_truth=np.bincount(gt.cls, minlength=n_cls),
        num_predictions=np.bincount(pr.cls, minlength=n_cls),
        num_videos=len(gt.videos),
    )


def classification_ap(
    gt_labels: Mapping[str, Sequence[str]],
    video_scores: Mapping[str, Mapping[str, float]],
    *,
    warnings: list[str] | None = None,
) -> dict[str, float]:
    """Per-class video classification AP (non-interpolated: mean precision at each positive video).

    ``gt_labels`` lists every evaluated video with its classes (an empty list is a background
    video, a negative for every class); ``video_scores`` gives each of those videos a score per
    class. Classes are those occurring in ``gt_labels``. Equal scores keep ``gt_labels`` order.
    Videos only in ``video_scores`` are ignored (counted in ``warnings``); a missing video or
    class score raises :class:`EvaluationInputError`.
    """
    classes = sorted({c for ls in gt_labels.values() for c in ls})
    if not classes:
        raise EvaluationInputError("video labels: no video has a label; classification mAP is undefined")
    videos = list(gt_labels)
    scores = np.empty((len(videos), len(classes)))
    for i, v in enumerate(videos):
        s = video_scores.get(v)
        if not isinstance(s, Mapping):
            raise EvaluationInputError(f"video scores: no scores for video {v!r}")
        for j, c in enumerate(classes):
            x = s.get(c)
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                raise EvaluationInputError(
                    f"video scores: video {v!r} class {c!r}: expected a finite number, got {x!r}"
                )
            scores[i, j] = x
    extra = len(set(video_scores) - set(gt_labels))
    if extra and warnings is not None:
        warnings.append(f"video scores: {extra} videos without ground-truth labels ignored")
    out = {}
    for j, c in enumerate(classes):
        pos = np.array([c in gt_labels[v] for v in videos])
        order = np.argsort(-scores[:, j], kind="stable")
        t = pos[order]
        tp_cum = np.cumsum(t, dtype=np.float64)
        prec = tp_cum / np.arange(1, t.size + 1)
        out[c] = math.fsum(prec[t].tolist()) / int(pos.sum())
    return out


def classification_map(
    gt_labels: Mapping[str, Sequence[str]],
    video_scores: Mapping[str, Mapping[str, float]],
    *,
    warnings: list[str] | None = None,
) -> float:
    """Mean over classes of :func:`classification_ap` (a fraction in [0, 1])."""
    ap = classification_ap(gt_labels, video_scores, warnings=warnings)
    return math.fsum(ap.values()) / len(ap)


def format_table(result: DetectionResult) -> str:
    """Human-readable table of AP per class and threshold, in percent."""
    labels = result.threshold_labels or [f"{t:g}" for t in result.tiou_thresholds]
    width = max([len("mAP"), *(len(c) for c in result.classes)])
    head = f"{'class':<{width}} " + " ".join(f"{'@' + lab:>7}" for lab in labels) + f" {'avg':>7}"
    lines = [
        f"mode: {result.mode}   subset: {result.subset or 'all'}   videos: {result.num_videos}   "
        f"ground truth: {int(result.num_ground_truth.sum())}   predictions: {int(result.num_predictions.sum())}",
        "AP (%) per class and tIoU threshold",
        head,
        "-" * len(head),
    ]
    for c, row in zip(result.classes, result.ap):
        lines.append(f"{c:<{width}} " + " ".join(f"{100 * v:7.2f}" for v in row) + f" {100 * row.mean():7.2f}")
    lines.append("-" * len(head))
    lines.append(
        f"{'mAP':<{width}} " + " ".join(f"{100 * v:7.2f}" for v in result.map) + f" {100 * result.average_map:7.2f}"
    )
    if result.classification_map is not None:
        lines.append(f"classification mAP: {100 * result.classification_map:.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (2 for bad input, with a one-line message)."""
    ap = argparse.ArgumentParser(
        prog="python -m hamnet.evaluate",
        description="Temporal action detection mAP (ActivityNet-official or THUMOS14-kit semantics).",
    )
    ap.add_argument("ground_truth", help="ground truth in ActivityNet form (JSON)")
    ap.add_argument("predictions", help="predictions in ActivityNet results form (JSON)")
    ap.add_argument(
        "--tiou-thresholds",
        nargs="+",
        metavar="T",
        help="tIoU thresholds, read as exact decimals (default: 0.5:0.05:0.95 in activitynet "
        "mode, 0.1:0.1:0.7 in thumos14 mode)",
    )
    ap.add_argument("--mode", choices=MODES, default="activitynet")
    ap.add_argument("--subset", help="evaluate only ground-truth videos of this subset (e.g. test, validation)")
    ap.add_argument(
        "--ignore-other-videos",
        action="store_true",
        help="drop predictions on videos absent from the evaluated ground truth instead of counting "
        "them as false positives (the official behaviour)",
    )
    ap.add_argument(
        "--video-scores",
        metavar="JSON",
        help="video-level class scores {video: {label: score}} for classification mAP "
        "(also read from a top-level 'video_scores' key of the predictions file)",
    )
    ap.add_argument("--output", metavar="JSON", help="write the metrics here (atomically)")
    args = ap.parse_args(argv)
    thresholds = args.tiou_thresholds or (
        THUMOS14_TIOU_THRESHOLDS if args.mode == "thumos14" else ACTIVITYNET_TIOU_THRESHOLDS
    )
    try:
        _parse_thresholds(thresholds, [])
    except ValueError as e:
        print(f"error: --tiou-thresholds: {e}", file=sys.stderr)
        return 2
    try:
        gt = load_json(args.ground_truth, "ground_truth")
        pred = load_json(args.predictions, "predictions")
        result = evaluate_detection(
            gt,
            pred,
            thresholds,
            mode=args.mode,
            subset=args.subset,
            ignore_other_videos=args.ignore_other_videos,
            gt_source=args.ground_truth,
            pred_source=args.predictions,
        )
        scores, scores_src = None, None
        if args.video_scores:
            data = load_json(args.video_scores, "video_scores")
            scores, scores_src = data.get("video_scores", data), args.video_scores
        elif "video_scores" in pred:
            scores, scores_src = pred["video_scores"], args.predictions
        if scores is not None:
            if not isinstance(scores, Mapping):
                raise EvaluationInputError(f"{scores_src}: video scores must be an object {{video: {{label: score}}}}")
            try:
                result.classification_map = classification_map(
                    video_labels(gt, args.subset), scores, warnings=result.warnings
                )
            except EvaluationInputError as e:
                raise EvaluationInputError(f"{scores_src}: {e}") from None
    except EvaluationInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(format_table(result))
    if args.output:
        try:
            write_json_atomic(args.output, result.to_dict())
        except OSError as e:
            print(f"error: cannot write {args.output}: {e}", file=sys.stderr)
            return 2
        print(f"metrics written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

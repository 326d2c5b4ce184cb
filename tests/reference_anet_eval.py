"""Slow, loop-by-loop reference evaluators, used only by the tests and the benchmark.

Written from the semantics in docs/evaluation.md (ActivityNet official detection evaluator and
the THUMOS14 kit), one prediction and one ground truth at a time, with no numpy, so that it shares
no code and no vectorisation trick with hamnet.evaluate. It applies the same documented choices
(stable ties, unknown labels ignored, zero-length tIoU 0, Ambiguous handling) and sums with
math.fsum like the fast evaluator, so the two must agree to the last bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

AMBIGUOUS = "Ambiguous"


def _gt_tables(gt: Mapping[str, Any], subset: str | None):
    videos: list[str] = []
    segments: list[tuple[str, str, float, float]] = []  # video, label, start, end in file order
    ambiguous: dict[str, list[tuple[float, float]]] = {}
    for vid, entry in gt["database"].items():
        if subset is not None and entry.get("subset") != subset:
            continue
        videos.append(vid)
        for ann in entry["annotations"]:
            s, e = float(ann["segment"][0]), float(ann["segment"][1])
            if ann["label"] == AMBIGUOUS:
                ambiguous.setdefault(vid, []).append((s, e))
            else:
                segments.append((vid, ann["label"], s, e))
    classes = sorted({x[1] for x in segments})
    return videos, segments, ambiguous, classes


def _pred_list(pred: Mapping[str, Any], classes: Sequence[str]):
    known = set(classes)
    out = []  # video, label, score, start, end in file order
    for vid, items in pred["results"].items():
        for it in items:
            if it["label"] in known:
                out.append((vid, it["label"], float(it["score"]), float(it["segment"][0]), float(it["segment"][1])))
    return out


def tiou(ps: float, pe: float, gs: float, ge: float) -> float:
    """tIoU as the official segment_iou computes it, with 0/0 defined as 0."""
    inter = min(pe, ge) - max(ps, gs)
    if inter < 0.0:
        inter = 0.0
    union = (ge - gs) + (pe - ps) - inter
    if union <= 0.0:
        return 0.0
    return inter / union


def interpolated_ap(tp_flags: Sequence[bool], n_pos: int) -> float:
    """VOC-style interpolated AP exactly as the ActivityNet code defines it (padding, right-to-left max)."""
    rec, prec = [], []
    n_tp = n_fp = 0
    for hit in tp_flags:
        if hit:
            n_tp += 1
        else:
            n_fp += 1
        rec.append(n_tp / n_pos)
        prec.append(n_tp / (n_tp + n_fp))
    mprec = [0.0] + prec + [0.0]
    mrec = [0.0] + rec + [1.0]
    for i in range(len(mprec) - 2, -1, -1):
        if mprec[i + 1] > mprec[i]:
            mprec[i] = mprec[i + 1]
    terms = []
    for i in range(1, len(mrec)):
        if mrec[i] != mrec[i - 1]:
            terms.append((mrec[i] - mrec[i - 1]) * mprec[i])
    return math.fsum(terms)


def reference_activitynet(
    gt: Mapping[str, Any], pred: Mapping[str, Any], thresholds: Sequence[float], subset: str | None = None
) -> tuple[list[str], list[list[float]], list[float]]:
    """Classes, AP[class][threshold], mAP[threshold] with the official ActivityNet semantics."""
    _, segments, _, classes = _gt_tables(gt, subset)
    preds = _pred_list(pred, classes)
    ap = []
    for c in classes:
        gt_by_video: dict[str, list[tuple[float, float]]] = {}
        for vid, label, s, e in segments:
            if label == c:
                gt_by_video.setdefault(vid, []).append((s, e))
        n_pos = sum(len(v) for v in gt_by_video.values())
        mine = [p for p in preds if p[1] == c]
        mine.sort(key=lambda p: -p[2])  # list.sort is stable: equal scores keep file order
        row = []
        for thr in thresholds:
            locked: set[tuple[str, int]] = set()
            flags = []
            for vid, _, _, ps, pe in mine:
                cands = [(tiou(ps, pe, gs, ge), j) for j, (gs, ge) in enumerate(gt_by_video.get(vid, []))]
                cands.sort(key=lambda x: (-x[0], x[1]))
                hit = False
                for value, j in cands:
                    if value < thr:
                        break
                    if (vid, j) in locked:
                        continue
                    locked.add((vid, j))
                    hit = True
                    break
                flags.append(hit)
            row.append(interpolated_ap(flags, n_pos) if flags else 0.0)
        ap.append(row)
    maps = [math.fsum(ap[c][k] for c in range(len(classes))) / len(classes) for k in range(len(thresholds))]
    return classes, ap, maps


def kit_overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    """THUMOS14 kit interval overlap: intersection / hull when they intersect, else 0."""
    iw = min(a1, b1) - max(a0, b0)
    if iw > 0:
        return iw / (max(a1, b1) - min(a0, b0))
    return 0.0


def reference_thumos_kit(
    gt: Mapping[str, Any], pred: Mapping[str, Any], thresholds: Sequence[float], subset: str | None = None
) -> tuple[list[str], list[list[float]], list[float]]:
    """Classes, AP[class][threshold], mAP[threshold] with the THUMOS14 kit semantics."""
    videos, segments, ambiguous, classes = _gt_tables(gt, subset)
    preds = _pred_list(pred, classes)
    all_videos = sorted(set(videos) | {p[0] for p in preds})
    gt_groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for v, label, s, e in segments:
        gt_groups.setdefault((v, label), []).append((s, e))
    det_groups: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for v, label, score, s, e in preds:
        det_groups.setdefault((v, label), []).append((score, s, e))
    ap = []
    for c in classes:
        n_pos = sum(1 for x in segments if x[1] == c)
        row = []
        for thr in thresholds:
            ranked: list[tuple[float, bool]] = []
            for vid in all_videos:
                gts = gt_groups.get((vid, c), [])
                dets = sorted(det_groups.get((vid, c), []), key=lambda d: -d[0])  # stable
                free = [True] * len(dets)
                for gs, ge in gts:
                    best, best_ov = -1, -1.0
                    for j, (_, ds, de) in enumerate(dets):
                        if free[j]:
                            ov = kit_overlap(gs, ge, ds, de)
                            if ov > best_ov:
                                best, best_ov = j, ov
                    if best >= 0 and best_ov > thr:
                        free[best] = False
                for j, (score, ds, de) in enumerate(dets):
                    if not free[j]:
                        ranked.append((score, True))
                    elif not any(min(de, ae) - max(ds, a_s) > 0 for a_s, ae in ambiguous.get(vid, [])):
                        ranked.append((score, False))
            ranked.sort(key=lambda r: -r[0])
            n_tp = n_fp = 0
            precisions = []
            for _, hit in ranked:
                if hit:
                    n_tp += 1
                    precisions.append(n_tp / (n_fp + n_tp))
                else:
                    n_fp += 1
            row.append(math.fsum(precisions) / n_pos)
        ap.append(row)
    maps = [math.fsum(ap[c][k] for c in range(len(classes))) / len(classes) for k in range(len(thresholds))]
    return classes, ap, maps

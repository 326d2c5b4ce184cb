"""Evaluating a run's localizations: which ground-truth videos count, and the metrics record."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from core.activitynet import read_ground_truth_json
from hamnet.config import EvaluateConfig
from hamnet.evaluate import evaluate_detection
from pipeline.videos import map_to_ids


def ground_truth_by_id(path: str | os.PathLike, videos: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The ground-truth ``database`` re-keyed by video id, and the entries matching no video."""
    gt = read_ground_truth_json(path)
    return map_to_ids(gt["database"], videos)


def select_evaluated(database: Mapping[str, Any], ok_ids: set[str], subset: str) -> tuple[dict[str, Any], list[str]]:
    """Ground truth of the videos that are evaluated: in ``subset`` (if given) and extracted.

    Returns them and the ids left out because their extraction failed (reported, never dropped
    silently).
    """
    db = {v: e for v, e in database.items() if not subset or e.get("subset") == subset}
    failed = sorted(set(db) - ok_ids)
    return {v: e for v, e in db.items() if v in ok_ids}, failed


def evaluate_run(
    gt_path: str | os.PathLike,
    videos: Mapping[str, str],
    ok_ids: set[str],
    predictions: Mapping[str, Any],
    cfg: EvaluateConfig,
    subset: str = "",
) -> dict[str, Any]:
    """Detection mAP of ``predictions`` against the ground truth at ``gt_path``, as a JSON record.

    Only videos that are in the directory, in ``subset`` and extracted are evaluated, and
    predictions on other videos are not counted; every exclusion is listed under ``warnings``.
    """
    database, unmatched = ground_truth_by_id(gt_path, videos)
    db, failed = select_evaluated(database, ok_ids, subset)
    notes = []
    if unmatched:
        notes.append(f"{len(unmatched)} ground-truth videos are not in the video directory and are not evaluated")
    if failed:
        notes.append(f"{len(failed)} ground-truth videos failed extraction and are not evaluated: {failed}")
    if not db:
        raise ValueError(f"{gt_path}: no ground-truth video matches an extracted video (subset={subset or 'any'})")
    preds = {**predictions, "results": {v: s for v, s in predictions["results"].items() if v in db}}
    res = evaluate_detection({"database": db}, preds, list(cfg.tiou_thresholds), mode=cfg.mode)
    return {
        "tiou_thresholds": [float(x) for x in res.tiou_thresholds],
        "map": [float(x) for x in res.map],
        "average_map": float(res.average_map),
        "classes": list(res.classes),
        "ap": [[float(x) for x in row] for row in res.ap],
        "warnings": list(res.warnings) + notes,
        "num_videos": len(db),
        "subset": subset,
        "mode": cfg.mode,
    }

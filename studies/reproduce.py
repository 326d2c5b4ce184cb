"""Reproduce the paper's THUMOS14 and ActivityNet1.2 runs from the public W-TALC features.

One command imports the features and annotations, trains HAM-Net on the training subset with
the authors' settings (``configs/thumos14.yaml`` / ``configs/activitynet12.yaml``), localizes
the test subset, evaluates it and prints the per-tIoU table in the layout of the paper's
Tables 2 (THUMOS14) and 3 (ActivityNet1.2) next to the published numbers::

    hamnet-reproduce thumos14 \\
        --features data/Thumos14reduced-I3D-JOINTFeatures.npy \\
        --annotations data/Thumos14reduced-Annotations --work runs/thumos14

Every stage is skipped when its output exists (features, checkpoint, results), so an
interrupted run continues. docs/reproduce.md lists the commands and the published numbers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.activitynet import AMBIGUOUS, AnnotationError, video_labels
from core.atomic import write_json_atomic
from pipeline.config import load_config
from storage.annotations import read_thumos14_txt, read_wtalc_annotations, select_subset, write_ground_truth_json
from storage.featstore import FeatureStore, safe_video_id
from storage.labels import write_labels_csv


@dataclass(frozen=True)
class PaperResult:
    """Published mAP (percent) by tIoU, and the average the paper reports."""

    map: Mapping[float, float]
    average: float
    average_range: str
    source: str


@dataclass(frozen=True)
class DatasetRecipe:
    """How the authors ran one dataset."""

    config: str
    train_subset: str
    test_subset: str
    table_tious: tuple[float, ...]  # the columns of the paper's table
    paper: PaperResult


RECIPES: dict[str, DatasetRecipe] = {
    "thumos14": DatasetRecipe(
        config="thumos14",
        train_subset="validation",
        test_subset="test",
        table_tious=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
        paper=PaperResult(
            {0.1: 65.4, 0.2: 59.0, 0.3: 50.3, 0.4: 41.1, 0.5: 31.0, 0.6: 20.7, 0.7: 11.1},
            39.8,
            "0.1:0.7",
            "HAM-Net, AAAI 2021, Table 2 (THUMOS14)",
        ),
    ),
    "activitynet12": DatasetRecipe(
        config="activitynet12",
        train_subset="training",
        test_subset="validation",
        table_tious=(0.5, 0.75, 0.95),
        paper=PaperResult(
            {0.5: 41.0, 0.75: 24.8, 0.95: 5.3}, 25.1, "0.5:0.95", "HAM-Net, AAAI 2021, Table 3 (ActivityNet1.2)"
        ),
    ),
}


def build_ground_truth(annotation_dir: str | os.PathLike, *, with_ambiguous: bool = False) -> dict[str, Any]:
    """Ground truth keyed by feature-store ids from a W-TALC annotation folder.

    With ``with_ambiguous`` and an ``Ambiguous_test.txt`` in the folder (Thumos14reduced has
    one), its intervals are added as ``"Ambiguous"`` annotations for the THUMOS14-kit mode.
    """
    gt = read_wtalc_annotations(annotation_dir)
    database = {safe_video_id(v): e for v, e in gt["database"].items()}
    if with_ambiguous:
        amb = Path(annotation_dir) / "Ambiguous_test.txt"
        if not amb.is_file():
            raise AnnotationError(f"{amb}: needed for the THUMOS14-kit mode (Ambiguous intervals) but not found")
        for video, s, e in read_thumos14_txt(amb):
            vid = safe_video_id(video)
            if vid in database:
                database[vid]["annotations"].append({"segment": [s, e], "label": AMBIGUOUS})
    return {"database": database, "classes": gt["classes"]}


def format_paper_table(
    name: str, recipe: DatasetRecipe, tious: Iterable[float], map_: Iterable[float], average: float
) -> str:
    """Markdown table: the paper's row and this run's row, columns as in the paper."""
    ours = {round(float(t), 4): 100 * float(m) for t, m in zip(tious, map_)}
    cols = list(recipe.table_tious)
    head = "| method | " + " | ".join(f"mAP@{t:g}" for t in cols) + f" | AVG ({recipe.paper.average_range}) |"
    sep = "|---|" + "---:|" * (len(cols) + 1)
    paper = (
        "| HAM-Net (paper) | "
        + " | ".join(f"{recipe.paper.map[t]:.1f}" for t in cols)
        + f" | {recipe.paper.average:.1f} |"
    )
    this = (
        f"| {name} | "
        + " | ".join(f"{ours[round(t, 4)]:.1f}" if round(t, 4) in ours else "-" for t in cols)
        + f" | {100 * average:.1f} |"
    )
    return "\n".join([head, sep, paper, this]) + "\n"


def reproduce(
    dataset: str,
    work_dir: str | os.PathLike,
    *,
    features_npy: str | os.PathLike | None = None,
    annotation_dir: str | os.PathLike,
    store_dir: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    mode: str | None = None,
    progress: bool = True,
    log=print,
) -> dict[str, Any]:
    """Import, train, localize, evaluate; returns the metrics (also in ``work_dir/metrics.json``).

    ``store_dir``: use this feature store instead of importing ``features_npy`` (e.g. features
    made by this project's extractor, named like the annotation's videos).
    """
    from hamnet.config import LocalizeConfig, LossConfig, ModelConfig, TrainConfig
    from hamnet.evaluate import classification_map, evaluate_detection, format_table
    from hamnet.localize import localize_videos
    from hamnet.results import write_results_json
    from hamnet.train import train_hamnet
    from storage.wtalc import import_wtalc_features

    if dataset not in RECIPES:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(RECIPES)}")
    recipe = RECIPES[dataset]
    work = Path(work_dir)
    cfg = load_config(recipe.config, overrides)
    mode = mode or cfg["evaluate"]["mode"]
    if store_dir is None:
        if features_npy is None:
            raise ValueError("give features_npy (W-TALC features file) or store_dir (an existing feature store)")
        store_dir = work / "features"
        log(f"importing {features_npy} -> {store_dir}")
        import_wtalc_features(features_npy, annotation_dir, store_dir, progress=progress)
    gt = build_ground_truth(annotation_dir, with_ambiguous=(mode == "thumos14"))
    write_ground_truth_json(work / "gt.json", gt)
    train_gt = select_subset(gt, recipe.train_subset)
    test_gt = select_subset(gt, recipe.test_subset)
    labels = video_labels(train_gt)
    write_labels_csv(work / "labels_train.csv", labels)
    store = FeatureStore(store_dir)
    missing = sorted(set(gt["database"]) - set(store.video_ids))
    if missing:
        raise ValueError(f"{store_dir}: no features for {len(missing)} annotated video(s), e.g. {missing[:3]}")

    ckpt = work / "model.pt"
    if not ckpt.is_file():
        log(f"training on {len(labels)} {recipe.train_subset} videos ({recipe.config} settings)")
        train_hamnet(
            store,
            labels,
            gt["classes"],
            model_cfg=ModelConfig.from_dict(cfg["model"]),
            loss_cfg=LossConfig.from_dict(cfg["loss"]),
            train_cfg=TrainConfig.from_dict(cfg["train"]),
            checkpoint_path=ckpt,
            progress=progress,
        )
    test_store = FeatureStore(store_dir, sorted(test_gt["database"]))
    sps = {v: test_store.record(v).seconds_per_snippet for v in test_store}
    log(f"localizing {len(test_store)} {recipe.test_subset} videos")
    locs = localize_videos(
        ckpt,
        test_store,
        LocalizeConfig.from_dict(cfg["localize"]),
        seconds_per_snippet=sps,
        progress=progress,
        device=cfg["train"]["device"],
    )
    write_results_json(work / "results.json", {v: loc.segments for v, loc in locs.items()})
    preds = json.loads((work / "results.json").read_text(encoding="utf-8"))
    res = evaluate_detection(test_gt, preds, cfg["evaluate"]["tiou_thresholds"], mode=mode)
    cls = classification_map(
        video_labels(test_gt), {v: dict(zip(l.classes, map(float, l.video_scores))) for v, l in locs.items()}
    )
    table = format_paper_table(f"this run ({mode} evaluator)", recipe, res.tiou_thresholds, res.map, res.average_map)
    metrics = {
        "dataset": dataset,
        "mode": mode,
        "config": cfg,
        **res.to_dict(),
        "classification_map": cls,
        "paper": {
            "map": {str(k): v for k, v in recipe.paper.map.items()},
            "average": recipe.paper.average,
            "source": recipe.paper.source,
        },
        "table_markdown": table,
    }
    write_json_atomic(work / "metrics.json", metrics, default=float)
    log(format_table(res))
    log(table)
    return metrics

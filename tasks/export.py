"""Luigi task: the run's features, labels and ground truth in the layouts other codebases read.

``luigi --module tasks ExportFeatures --local-scheduler ...`` (or ``RunAll --export``) writes
``export/<hash>/`` under the storage root: ``wtalc/``, ``opentad/``, ``video_features/`` and
``export.json`` (docs/export.md). The hash covers the feature index (feature settings and the
video set), the labels and ground-truth files' contents and the export's own parameters, so
the export reruns only when one of those changes, never for a training or localization setting.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import luigi

from core.activitynet import read_ground_truth_json
from core.atomic import read_json
from core.hashing import settings_hash
from pipeline.runlog import start_run_log
from pipeline.videos import map_to_ids, ok_videos
from storage.export import FORMATS, MANIFEST, default_train_subset, export_store, plan_export
from storage.labels import read_labels_csv
from tasks.common import PipelineTask
from tasks.dataset import FeatureIndex

log = logging.getLogger("hamnet.tasks")


class ExportFeatures(PipelineTask):
    """``export/<hash>/export.json`` and the exported files beside it (storage/export.py)."""

    formats = luigi.Parameter(default=",".join(FORMATS), description=f"comma-separated subset of {list(FORMATS)}")
    export_name = luigi.Parameter(
        default="Features", description="W-TALC file prefix: <name>-I3D-JOINTFeatures.npy, <name>-Annotations/"
    )
    train_subset = luigi.Parameter(
        default="", description="subset of the labelled videos; default: the one HAM-Net's loader trains on"
    )
    unlabelled_subset = luigi.Parameter(
        default="test",
        description="subset of videos with neither labels nor ground truth (they are localized, so: test); "
        "empty = such videos are an error",
    )

    def requires(self):
        return self.clone(FeatureIndex)

    def format_list(self) -> list[str]:
        return [f.strip() for f in str(self.formats).split(",") if f.strip()]

    def resolved_train_subset(self) -> str:
        return self.train_subset or default_train_subset(self.export_name)

    def export_hash(self) -> str:
        fmts = self.format_list()
        return settings_hash(
            self.requires().index_hash(),
            self.input_identity(self.labels_path),
            self.input_identity(self.ground_truth_path),
            fmts,
            self.export_name,
            self.resolved_train_subset(),
            self.unlabelled_subset,
            # the OpenTAD config snippet carries the evaluation thresholds
            self.cfg["evaluate"]["tiou_thresholds"] if "opentad" in fmts else None,
        )

    def output(self):
        return luigi.LocalTarget(str(self.root / "export" / self.export_hash() / MANIFEST))

    def run(self):
        start_run_log(self.output_dir)
        out_dir = Path(self.output().path).parent
        if out_dir.exists():  # a killed earlier attempt (no manifest, or Luigi would not run us): start over
            shutil.rmtree(out_dir)
        index = read_json(self.input().path)
        ok = sorted(ok_videos(index))
        videos = self.videos()
        labels, gt, missing = None, None, []
        if self.labels_path is not None:
            labels, unmatched = map_to_ids(read_labels_csv(self.labels_path), videos)
            missing += unmatched
        if self.ground_truth_path is not None:
            raw = read_ground_truth_json(self.ground_truth_path)
            db, unmatched = map_to_ids(raw["database"], videos)
            gt, missing = {"database": db}, missing + unmatched
        plan = plan_export(
            index["feature_dir"],
            video_ids=ok,
            labels=labels,
            ground_truth=gt,
            train_subset=self.resolved_train_subset(),
            unlabelled_subset=self.unlabelled_subset or None,
            also_missing=missing,
        )
        manifest = export_store(
            plan,
            out_dir,
            formats=self.format_list(),
            name=self.export_name,
            tiou_thresholds=self.cfg["evaluate"]["tiou_thresholds"],
            progress=True,
            sources={
                "labels": str(self.labels_path) if self.labels_path else None,
                "ground_truth": str(self.ground_truth_path) if self.ground_truth_path else None,
                "feature_index": self.input().path,
            },
        )
        for w in manifest["warnings"]:
            log.warning("export: %s", w)
        log.info(
            "exported %d videos (%s) as %s -> %s",
            manifest["videos"],
            ", ".join(f"{s}: {n}" for s, n in manifest["subsets"].items()),
            ", ".join(manifest["formats"]),
            out_dir,
        )

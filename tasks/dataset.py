"""Dataset-level tasks: feature index, training, localization, evaluation, report, RunAll."""

from __future__ import annotations

import logging
from pathlib import Path

import luigi

from core.atomic import copy_file_atomic, read_json, remove_stale_partials, write_json_atomic, write_text_atomic
from core.hashing import file_digest, settings_hash
from pipeline.runlog import outcomes_from, start_run_log
from pipeline.videos import map_to_ids, ok_videos, read_record, source_stat
from tasks.common import PipelineTask
from tasks.shards import shard_tasks

log = logging.getLogger("hamnet.tasks")


def _clean_dir(path: Path) -> None:
    """Remove temporary files a killed run left in a task's own output directory."""
    if path.is_dir():
        for p in path.rglob(".*.partial"):
            p.unlink(missing_ok=True)


class FeatureIndex(PipelineTask):
    """The video set of this run: every video's outcome, and where the good ones' features are.

    Its path hashes the feature settings and the set of (id, file[, size, mtime]), so adding,
    removing or replacing a video changes it, and so reruns training and what follows.
    """

    def requires(self):
        # K videos per task (tasks/shards.py): one task per video made Luigi's scheduling quadratic.
        return shard_tasks(self)

    def feature_dir(self) -> Path:
        return self.root / "features" / self.extract_settings.feature_key()

    def index_hash(self) -> str:
        items = []
        for name, vid in sorted(self.videos().items(), key=lambda kv: kv[1]):
            stat = None if self.is_demo else source_stat(self.videos_path / name)
            items.append([vid, name, stat])
        return settings_hash(self.extract_settings.feature_key(), items)

    def output(self):
        return luigi.LocalTarget(str(self.root / "index" / f"{self.index_hash()}.json"))

    def run(self):
        start_run_log(self.output_dir)
        remove_stale_partials(self.output().path)
        videos = []
        feature_dir = self.feature_dir()
        for vid in sorted(self.videos().values()):
            path = feature_dir / f"{vid}.json"
            rec = read_record(path)
            if rec is None:
                raise RuntimeError(f"{path}: outcome record missing or unreadable")
            videos.append(
                {
                    k: rec.get(k)
                    for k in (
                        "video_id",
                        "source",
                        "status",
                        "reason",
                        "num_snippets",
                        "duration",
                        "seconds_per_snippet",
                        "warnings",
                    )
                }
            )
        index = {
            "feature_key": self.extract_settings.feature_key(),
            "feature_dir": str(self.feature_dir()) if videos else "",
            "video_dir": str(self.videos_path),
            "videos": videos,
            "skipped": [list(s) for s in self.skipped_files()],
            "random_backbone": bool(self.extract_settings.random_backbone),
        }
        write_json_atomic(self.output().path, index)
        ok = sum(v["status"] == "ok" for v in videos)
        log.info("feature index: %d videos, %d ok, %d failed", len(videos), ok, len(videos) - ok)


class Train(PipelineTask):
    """HAM-Net trained on the labelled ok videos: ``train/<hash>/hamnet.pt`` (resumable)."""

    @property
    def resources(self):
        return self.gpu_resources(self.cfg["train"]["device"])

    def requires(self):
        return self.clone(FeatureIndex)

    def train_hash(self) -> str:
        cfg = self.cfg
        train = {k: v for k, v in cfg["train"].items() if k not in ("device", "checkpoint_every")}
        return settings_hash(
            self.requires().index_hash(), self.input_identity(self.labels_path), cfg["model"], cfg["loss"], train
        )

    def output(self):
        return luigi.LocalTarget(str(self.root / "train" / self.train_hash() / "hamnet.pt"))

    def run(self):
        from hamnet.config import hamnet_settings
        from hamnet.train import train_hamnet
        from pipeline.extract import fit_model_to_features
        from pipeline.training import training_labels
        from storage.featstore import FeatureStore

        start_run_log(self.output_dir)
        if self.labels_path is None:
            raise ValueError(
                "training needs --labels (a CSV video,label); for inference only run Localize --checkpoint CKPT"
            )
        _clean_dir(Path(self.output().path).parent)
        index = read_json(self.input().path)
        train_labels, classes = training_labels(self.labels_path, self.videos(), ok_videos(index))
        model_cfg, loss_cfg, train_cfg, _ = hamnet_settings(self.cfg)
        model_cfg = fit_model_to_features(model_cfg, self.extract_settings)  # width follows the backbone
        log.info("training HAM-Net on %d videos, %d classes -> %s", len(train_labels), len(classes), self.output().path)
        train_hamnet(
            FeatureStore(index["feature_dir"], sorted(train_labels)),
            train_labels,
            classes,
            model_cfg=model_cfg,
            loss_cfg=loss_cfg,
            train_cfg=train_cfg,
            checkpoint_path=self.output().path,
            progress=True,
        )


class Localize(PipelineTask):
    """Segments for every ok video: ``localize/<hash>/`` with csv/<id>.csv, results.json, timelines.npz.

    With ``--checkpoint`` it uses that model (inference only: no labels, no training).
    """

    checkpoint = luigi.Parameter(default="", description="trained HAM-Net checkpoint; empty = train one")

    @property
    def resources(self):
        return self.gpu_resources(self.cfg["localize"]["device"])

    def requires(self):
        deps = {"index": self.clone(FeatureIndex)}
        if not self.checkpoint:
            deps["model"] = self.clone(Train)
        return deps

    def loc_hash(self) -> str:
        model = ("ckpt:" + file_digest(self.checkpoint)) if self.checkpoint else self.requires()["model"].train_hash()
        # The device changes speed, not results: it stays out of the hash.
        localize = {k: v for k, v in self.cfg["localize"].items() if k != "device"}
        return settings_hash(model, self.requires()["index"].index_hash(), localize)

    def output(self):
        return luigi.LocalTarget(str(self.root / "localize" / self.loc_hash() / "results.json"))

    def run(self):
        from hamnet.config import LocalizeConfig
        from hamnet.localize import localize_videos
        from hamnet.results import write_results_json, write_segments_csv
        from pipeline.report import Timeline, save_timelines
        from storage.featstore import FeatureStore

        start_run_log(self.output_dir)
        out_dir = Path(self.output().path).parent
        _clean_dir(out_dir)
        index = read_json(self.input()["index"].path)
        ok = ok_videos(index)
        ckpt = self.checkpoint or self.input()["model"].path
        sps = {v: float(r["seconds_per_snippet"]) for v, r in ok.items()}
        log.info("localizing %d videos with %s", len(ok), ckpt)
        locs = localize_videos(
            ckpt,
            FeatureStore(index["feature_dir"], sorted(ok)),
            LocalizeConfig.from_dict(self.cfg["localize"]),
            seconds_per_snippet=sps,
            progress=True,
            device=self.cfg["localize"]["device"],
        )
        for vid, loc in locs.items():
            write_segments_csv(out_dir / "csv" / f"{vid}.csv", vid, loc.segments)
        save_timelines(
            out_dir / "timelines.npz",
            [
                Timeline(
                    vid,
                    sps[vid],
                    loc.attention,
                    loc.cas,
                    list(loc.classes),
                    loc.video_scores,
                    [{"segment": [s.t_start, s.t_end], "label": s.label, "score": s.score} for s in loc.segments],
                )
                for vid, loc in sorted(locs.items())
            ],
        )
        # results.json last: its presence is what marks this task complete.
        write_results_json(self.output().path, {vid: loc.segments for vid, loc in locs.items()})
        log.info("wrote %d segment CSVs to %s and %s", len(locs), out_dir / "csv", self.output().path)


class Evaluate(PipelineTask):
    """Detection mAP of the localizations against the ground truth: ``evaluate/<hash>/metrics.json``."""

    def requires(self):
        return {"index": self.clone(FeatureIndex), "localize": self.clone(Localize)}

    def output(self):
        h = settings_hash(
            self.requires()["localize"].loc_hash(),
            self.input_identity(self.ground_truth_path),
            self.cfg["evaluate"],
            self.subset,
        )
        return luigi.LocalTarget(str(self.root / "evaluate" / h / "metrics.json"))

    def run(self):
        from hamnet.config import EvaluateConfig
        from pipeline.evaluation import evaluate_run

        start_run_log(self.output_dir)
        remove_stale_partials(self.output().path)
        if self.ground_truth_path is None:
            raise ValueError("evaluation needs --ground-truth (ActivityNet-form JSON)")
        metrics = evaluate_run(
            self.ground_truth_path,
            self.videos(),
            set(ok_videos(read_json(self.input()["index"].path))),
            read_json(self.input()["localize"].path),
            EvaluateConfig.from_dict(self.cfg["evaluate"]),
            self.subset,
        )
        write_json_atomic(self.output().path, metrics)
        log.info(
            "mAP@tIoU %s = %s (avg %.4f) on %d videos",
            metrics["tiou_thresholds"],
            [round(m, 4) for m in metrics["map"]],
            metrics["average_map"],
            metrics["num_videos"],
        )


class Report(PipelineTask):
    """The HTML report: ``report/<hash>/report.html``."""

    def requires(self):
        deps = {"index": self.clone(FeatureIndex), "localize": self.clone(Localize)}
        if self.ground_truth_path is not None:
            deps["evaluate"] = self.clone(Evaluate)
        return deps

    def report_hash(self) -> str:
        deps = self.requires()
        return settings_hash(
            deps["localize"].loc_hash(),
            deps["evaluate"].output().path if "evaluate" in deps else None,
            self.cfg["report"],
            self.input_identity(self.labels_path),  # which videos are training videos
        )

    def output(self):
        return luigi.LocalTarget(str(self.root / "report" / self.report_hash() / "report.html"))

    def run(self):
        from pipeline.evaluation import ground_truth_by_id
        from pipeline.report import load_timelines, run_info, write_report
        from pipeline.report_config import ReportConfig
        from storage.labels import read_labels_csv

        start_run_log(self.output_dir)
        remove_stale_partials(self.output().path)
        index = read_json(self.input()["index"].path)
        loc_dir = Path(self.input()["localize"].path).parent
        timelines = load_timelines(loc_dir / "timelines.npz")
        metrics = read_json(self.input()["evaluate"].path) if "evaluate" in self.input() else None
        gt = None
        if self.ground_truth_path is not None:
            gt = {"database": ground_truth_by_id(self.ground_truth_path, self.videos())[0]}
        name = self.config_name
        notes: list[str] = []
        labels_path = self.labels_path
        train_videos = map_to_ids(read_labels_csv(labels_path), self.videos())[0] if labels_path else {}
        if self.is_demo:
            notes.insert(
                0,
                "Synthetic demo data (pipeline/demo.py): train videos carry only video-level labels; "
                "mAP is measured on the held-out test videos.",
            )
        write_report(
            self.output().path,
            title="HAM-Net temporal action localization report",
            timelines=timelines,
            outcomes=outcomes_from(index, read_json(self.input()["localize"].path)),
            metrics=metrics,
            ground_truth=gt,
            random_backbone=bool(index.get("random_backbone")),
            notes=notes,
            info=run_info(
                cfg=self.cfg,
                config_name=name,
                config_hash=settings_hash(self.cfg),
                overrides=self.overrides,
                feature_inputs=self.extract_settings.feature_inputs(),
                subset=self.subset,
                localizations=loc_dir,
                videos=self.videos_path,
            ),
            train_videos=set(train_videos),
            settings=ReportConfig.from_dict(self.cfg["report"]),
            progress=True,
        )
        log.info("report: %s", self.output().path)


class VideosFailed(RuntimeError):
    """Some videos could not be processed; the run's results cover the others."""


class RunAll(PipelineTask):
    """Everything from videos to report; exits non-zero (task failed) if any video failed.

    Writes ``report.html``, ``results.json`` and ``summary.txt`` at the top of the output
    directory, and ``done/<hash>.json`` only when every video succeeded (so a run with bad
    videos keeps reporting them, and failing, on every rerun).
    """

    export = luigi.BoolParameter(default=False, description="also write an export (tasks/export.py, docs/export.md)")

    def requires(self):
        deps = {"report": self.clone(Report), "index": self.clone(FeatureIndex), "localize": self.clone(Localize)}
        if self.ground_truth_path is not None:  # issue 10: the mAP goes into the final block
            deps["evaluate"] = self.clone(Evaluate)
        if self.export:  # issue 15: optional export; imported here because tasks.export imports this module
            from tasks.export import ExportFeatures

            deps["export"] = self.clone(ExportFeatures)
        return deps

    def complete(self):
        # issue 15: --export asked for after a finished run must still write the export.
        return super().complete() and (not self.export or self.requires()["export"].complete())

    def output(self):
        return luigi.LocalTarget(str(self.root / "done" / f"{self.requires()['report'].report_hash()}.json"))

    def run(self):
        from pipeline.finish import final_block, publish_segments
        from pipeline.report import publish_index
        from pipeline.runlog import format_summary

        log_path = start_run_log(self.output_dir)
        index = read_json(self.input()["index"].path)
        results = read_json(self.input()["localize"].path)
        outcomes = outcomes_from(index, results)
        loc_dir = Path(self.input()["localize"].path).parent
        skipped = [tuple(s) for s in index.get("skipped", [])]
        metrics = read_json(self.input()["evaluate"].path) if "evaluate" in self.input() else None
        num_csv = publish_segments(loc_dir / "csv", self.root / "segments")
        block = final_block(
            root=self.root,
            outcomes=outcomes,
            skipped=skipped,
            metrics=metrics,
            num_csv=num_csv,
            log_path=log_path,
            random_backbone=bool(index.get("random_backbone")),
            video_warnings=[w for v in index["videos"] for w in (v.get("warnings") or [])],
        )
        text = block + "\n" + format_summary(outcomes, skipped)
        text += f"\nlocalizations (hash-named, exact for reruns): {loc_dir}\n"
        write_text_atomic(self.root / "summary.txt", text)
        publish_index(self.input()["report"].path, self.root / "report.html")
        copy_file_atomic(self.input()["localize"].path, self.root / "results.json")
        log.info("\n%s", block.rstrip("\n"))
        failed = [o for o in outcomes if o.status != "ok"]
        if failed:
            raise VideosFailed(
                f"{len(failed)} of {len(outcomes)} videos failed: "
                + "; ".join(f"{o.source}: {o.reason}" for o in failed)
            )
        write_json_atomic(self.output().path, {"report": self.input()["report"].path, "videos": len(outcomes)})

"""Dataset-level tasks: feature index, training, localization, evaluation, report, RunAll."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import luigi

from pipeline.config import settings_hash
from pipeline.runlog import read_json, remove_stale_partials, start_run_log, write_json_atomic, write_text_atomic
from tasks.common import PipelineTask, file_digest, source_stat
from tasks.shards import shard_tasks
from tasks.videos import read_record

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
        for vid in sorted(self.videos().values()):
            path = self.feature_dir() / f"{vid}.json"
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


def ok_videos(index: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["video_id"]: v for v in index["videos"] if v["status"] == "ok"}


def map_to_ids(table: dict[str, Any], videos: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Re-key a ``{video name: value}`` table (labels, ground truth) by video id.

    A key may be the file name, its stem or the id itself. Returns the re-keyed table and the
    keys that match no video in the directory.
    """
    lookup: dict[str, str] = {}
    for name, vid in videos.items():
        for k in (name, Path(name).stem, vid):
            lookup.setdefault(k, vid)
    out, unmatched = {}, []
    for key, value in table.items():
        if key in lookup:
            out[lookup[key]] = value
        else:
            unmatched.append(key)
    return out, unmatched


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
        from storage.featstore import FeatureStore
        from storage.labels import class_list, read_labels_csv

        start_run_log(self.output_dir)
        if self.labels_path is None:
            raise ValueError(
                "training needs --labels (a CSV video,label); for inference only run Localize --checkpoint CKPT"
            )
        _clean_dir(Path(self.output().path).parent)
        index = read_json(self.input().path)
        ok = ok_videos(index)
        labels, unmatched = map_to_ids(read_labels_csv(self.labels_path), self.videos())
        if unmatched:
            log.warning(
                "%d labelled videos are not in %s (ignored): %s", len(unmatched), self.videos_path, unmatched[:10]
            )
        failed = sorted(set(labels) - set(ok))
        if failed:
            log.warning("%d labelled videos failed extraction and are left out of training: %s", len(failed), failed)
        train_labels = {v: labs for v, labs in labels.items() if v in ok}
        model_cfg, loss_cfg, train_cfg, _ = hamnet_settings(self.cfg)
        log.info(
            "training HAM-Net on %d videos, %d classes -> %s",
            len(train_labels),
            len(class_list(labels)),
            self.output().path,
        )
        train_hamnet(
            FeatureStore(index["feature_dir"], sorted(train_labels)),
            train_labels,
            class_list(labels),
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
        return self.gpu_resources(self.cfg["train"]["device"])

    def requires(self):
        deps = {"index": self.clone(FeatureIndex)}
        if not self.checkpoint:
            deps["model"] = self.clone(Train)
        return deps

    def loc_hash(self) -> str:
        model = ("ckpt:" + file_digest(self.checkpoint)) if self.checkpoint else self.requires()["model"].train_hash()
        return settings_hash(model, self.requires()["index"].index_hash(), self.cfg["localize"])

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
            device=self.cfg["train"]["device"],
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
        from hamnet.evaluate import evaluate_detection

        start_run_log(self.output_dir)
        remove_stale_partials(self.output().path)
        if self.ground_truth_path is None:
            raise ValueError("evaluation needs --ground-truth (ActivityNet-form JSON)")
        gt_raw = _load_ground_truth(self.ground_truth_path)
        db, unmatched = map_to_ids(gt_raw["database"], self.videos())
        if self.subset:
            db = {v: e for v, e in db.items() if e.get("subset") == self.subset}
        ok = ok_videos(read_json(self.input()["index"].path))
        failed = sorted(set(db) - set(ok))
        notes = []
        if unmatched:
            notes.append(f"{len(unmatched)} ground-truth videos are not in the video directory and are not evaluated")
        if failed:
            notes.append(f"{len(failed)} ground-truth videos failed extraction and are not evaluated: {failed}")
        db = {v: e for v, e in db.items() if v in ok}
        if not db:
            raise ValueError(
                f"{self.ground_truth_path}: no ground-truth video matches an extracted video "
                f"(subset={self.subset or 'any'})"
            )
        preds = read_json(self.input()["localize"].path)
        preds = {**preds, "results": {v: s for v, s in preds["results"].items() if v in db}}
        ev = self.cfg["evaluate"]
        res = evaluate_detection({"database": db}, preds, ev["tiou_thresholds"], mode=ev["mode"])
        metrics = {
            "tiou_thresholds": [float(x) for x in res.tiou_thresholds],
            "map": [float(x) for x in res.map],
            "average_map": float(res.average_map),
            "classes": list(res.classes),
            "ap": [[float(x) for x in row] for row in res.ap],
            "warnings": list(res.warnings) + notes,
            "num_videos": len(db),
        }
        write_json_atomic(self.output().path, metrics)
        log.info(
            "mAP@tIoU %s = %s (avg %.4f) on %d videos",
            metrics["tiou_thresholds"],
            [round(m, 4) for m in metrics["map"]],
            metrics["average_map"],
            len(db),
        )


def _load_ground_truth(path: Path) -> dict[str, Any]:
    try:
        gt = read_json(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read ground truth ({e})") from e
    if not isinstance(gt, dict) or not isinstance(gt.get("database"), dict):
        raise ValueError(f"{path}: not ActivityNet-form ground truth (needs a 'database' mapping)")
    return gt


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
            deps["localize"].loc_hash(), deps["evaluate"].output().path if "evaluate" in deps else None
        )

    def output(self):
        return luigi.LocalTarget(str(self.root / "report" / self.report_hash() / "report.html"))

    def run(self):
        from pipeline.report import load_timelines, write_report

        start_run_log(self.output_dir)
        remove_stale_partials(self.output().path)
        index = read_json(self.input()["index"].path)
        loc_dir = Path(self.input()["localize"].path).parent
        timelines = load_timelines(loc_dir / "timelines.npz")
        metrics = read_json(self.input()["evaluate"].path) if "evaluate" in self.input() else None
        gt = None
        if self.ground_truth_path is not None:
            gt_raw = _load_ground_truth(self.ground_truth_path)
            gt = {"database": map_to_ids(gt_raw["database"], self.videos())[0]}
        name = self.config or ("demo" if self.is_demo else "thumos14")
        notes = [
            f"config: {name}" + (f" with overrides {self.overrides!r}" if self.overrides else ""),
            f"videos: {self.videos_path}",
            f"localizations: {loc_dir}",
        ]
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
        )
        log.info("report: %s", self.output().path)


def outcomes_from(index: dict[str, Any], results: dict[str, Any] | None = None):
    from pipeline.report import VideoOutcome

    res = (results or {}).get("results", {})
    return [
        VideoOutcome(
            v["video_id"],
            v["source"],
            v["status"],
            v.get("reason") or "",
            int(v.get("num_snippets") or 0),
            float(v.get("duration") or 0.0),
            len(res[v["video_id"]]) if v["video_id"] in res else None,
        )
        for v in index["videos"]
    ]


class VideosFailed(RuntimeError):
    """Some videos could not be processed; the run's results cover the others."""


class RunAll(PipelineTask):
    """Everything from videos to report; exits non-zero (task failed) if any video failed.

    Writes ``report.html``, ``results.json`` and ``summary.txt`` at the top of the output
    directory, and ``done/<hash>.json`` only when every video succeeded (so a run with bad
    videos keeps reporting them, and failing, on every rerun).
    """

    def requires(self):
        return {"report": self.clone(Report), "index": self.clone(FeatureIndex), "localize": self.clone(Localize)}

    def output(self):
        return luigi.LocalTarget(str(self.root / "done" / f"{self.requires()['report'].report_hash()}.json"))

    def run(self):
        from pipeline.runlog import format_summary

        start_run_log(self.output_dir)
        index = read_json(self.input()["index"].path)
        results = read_json(self.input()["localize"].path)
        outcomes = outcomes_from(index, results)
        loc_dir = Path(self.input()["localize"].path).parent
        text = format_summary(outcomes, [tuple(s) for s in index.get("skipped", [])])
        text += (
            f"\nreport: {self.root / 'report.html'}\nsegment CSVs: {loc_dir / 'csv'}\n"
            f"results: {self.root / 'results.json'}\n"
        )
        write_text_atomic(self.root / "summary.txt", text)
        _copy_atomic(self.input()["report"].path, self.root / "report.html")
        _copy_atomic(self.input()["localize"].path, self.root / "results.json")
        log.info("run summary (%s):\n%s", self.root / "summary.txt", text)
        failed = [o for o in outcomes if o.status != "ok"]
        if failed:
            raise VideosFailed(
                f"{len(failed)} of {len(outcomes)} videos failed: "
                + "; ".join(f"{o.source}: {o.reason}" for o in failed)
            )
        write_json_atomic(self.output().path, {"report": self.input()["report"].path, "videos": len(outcomes)})


def _copy_atomic(src: str | Path, dst: Path) -> None:
    remove_stale_partials(dst)
    tmp = dst.with_name(f".{dst.name}.copy.partial")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)

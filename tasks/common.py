"""What every task shares: the run parameters, resolved settings, the video list and paths.

Storage layout under ``--output-dir`` (the "storage root"; several machines may share it)::

    demo/<spec_hash>/             the synthetic demo set (only when no --video-dir is given)
    flow/<flow_key>/<id>.h5       quantised TV-L1 flow of one video   (+ <id>.json: outcome record)
    features/<feature_key>/<id>.h5  I3D features of one video        (+ <id>.json: outcome record)
    index/<index_hash>.json       the video set: ok videos and failures with reasons
    train/<train_hash>/hamnet.pt  the trained model (+ hamnet.pt.resume while training)
    localize/<loc_hash>/          results.json, csv/<id>.csv, timelines.npz
    evaluate/<eval_hash>/metrics.json
    report/<report_hash>/report.html
    done/<report_hash>.json       RunAll's completion marker (written only when every video succeeded)
    report.html, summary.txt, results.json, segments/<id>.csv   copies of the latest run, for people
    logs/run-<UTC>-<pid>.log      one log per luigi command

Every hash is over exactly the settings and inputs that change that output, so Luigi's
"output exists = done" rule reruns exactly the affected stages.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import luigi
import luigi.interface

from core.hashing import file_digest, settings_hash
from extractors.settings import ExtractSettings
from pipeline.config import load_config_cached
from pipeline.console import install_console
from pipeline.demo import DemoSpec, plan_demo
from pipeline.preflight import EXIT_PREFLIGHT, PreflightError, preflight_once
from pipeline.runlog import start_run_log
from pipeline.videos import discover_videos, skipped_files
from storage.featstore import assign_video_ids

DEMO_SPEC = DemoSpec()


class PipelineTask(luigi.Task):
    """Parameters every pipeline task takes; ``clone`` passes them down the graph."""

    output_dir = luigi.Parameter(default="demo_out", description="storage root for all outputs")
    video_dir = luigi.Parameter(default="", description="directory of videos; empty = the synthetic demo")
    labels = luigi.Parameter(default="", description="CSV video,label of the training videos")
    ground_truth = luigi.Parameter(default="", description="ActivityNet-form JSON for evaluation (optional)")
    subset = luigi.Parameter(default="", description="evaluate only ground-truth videos of this subset")
    config = luigi.Parameter(
        default="",
        description="thumos14 | activitynet12 | demo | a YAML path; default: demo without --video-dir, else thumos14",
    )
    overrides = luigi.Parameter(default="", description='e.g. "train.epochs=5 extract.crop=112"')
    ignore_unmatched_labels = luigi.BoolParameter(
        default=False, description="train without labelled videos that are not in --video-dir (default: an error)"
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # One log file per luigi command, opened as soon as the command builds its tasks, so
        # that even a run with nothing to do leaves a record.
        start_run_log(self.output_dir)
        install_console(_luigi_console_level())
        self._preflight()

    def _preflight(self) -> None:
        """Check every input before Luigi schedules anything (pipeline/preflight.py).

        Runs when the first task of a command is built; a problem stops the command here with
        one message naming every bad file and key, and exit code ``EXIT_PREFLIGHT``.
        """
        try:
            preflight_once(
                config_name=self.config_name,
                overrides=self.overrides,
                output_dir=self.output_dir,
                video_dir=None if self.is_demo else self.video_dir,
                labels=None if self.is_demo else self.labels,
                ground_truth=None if self.is_demo else self.ground_truth,
                subset=self.subset,
                ignore_unmatched_labels=self.ignore_unmatched_labels,
            )
        except PreflightError as e:
            logging.getLogger("hamnet.preflight").error("%s", e)
            raise SystemExit(EXIT_PREFLIGHT) from e

    # ---- resolved inputs -------------------------------------------------------------------
    @property
    def is_demo(self) -> bool:
        return not self.video_dir

    @property
    def root(self) -> Path:
        return Path(self.output_dir)

    @property
    def demo_dir(self) -> Path:
        return self.root / "demo" / settings_hash(asdict(DEMO_SPEC))

    @property
    def videos_path(self) -> Path:
        return self.demo_dir / "videos" if self.is_demo else Path(self.video_dir)

    @property
    def labels_path(self) -> Path | None:
        if self.is_demo:
            return self.demo_dir / "labels.csv"
        return Path(self.labels) if self.labels else None

    @property
    def ground_truth_path(self) -> Path | None:
        if self.is_demo:
            return self.demo_dir / "ground_truth.json"
        return Path(self.ground_truth) if self.ground_truth else None

    @property
    def config_name(self) -> str:
        return self.config or ("demo" if self.is_demo else "thumos14")

    @functools.cached_property
    def cfg(self) -> dict[str, Any]:
        """The validated settings (a bad key or value fails when the task is built).

        One copy per task: Luigi and the task itself ask for settings many times (every
        ``output()``, hash and ``extract_settings``), and copying the memoised config on each
        ask was a third of FeatureIndex's CPU at 3,000 videos.
        """
        return load_config_cached(self.config_name, self.overrides)

    @property
    def extract_settings(self) -> ExtractSettings:
        return _extract_settings(json.dumps(self.cfg["extract"], sort_keys=True))

    def videos(self) -> dict[str, str]:
        """file name -> video id of every video file, ordered by id (demo: the planned names)."""
        if self.is_demo:
            ids = assign_video_ids([f"{v.video_id}.mp4" for v in plan_demo(DEMO_SPEC)])
            return dict(sorted(ids.items(), key=lambda kv: kv[1]))
        return dict(_discover(str(self.videos_path), _dir_key(self.videos_path)))

    def skipped_files(self) -> list[tuple[str, str]]:
        return [] if self.is_demo else skipped_files(self.videos_path)

    def input_identity(self, path: Path | None) -> str | None:
        """Content hash of an input file (labels, ground truth); demo inputs are fixed by its spec."""
        if path is None:
            return None
        if self.is_demo:
            return "demo:" + settings_hash(asdict(DEMO_SPEC))
        return file_digest(path)

    def gpu_resources(self, device: str) -> dict[str, int]:
        """Claim the ``gpu`` resource unless the stage is pinned to the CPU.

        ``auto`` claims it: deciding whether CUDA is present would mean touching CUDA in the
        scheduling process, which breaks it in the forked workers (docs/pipeline.md, "GPUs").
        """
        return {} if str(device) == "cpu" else {"gpu": 1}


def _luigi_console_level() -> int:
    """The level from which Luigi's own messages reach the terminal: ``--log-level`` / [core] log_level."""
    try:
        return int(getattr(logging, str(luigi.interface.core().log_level).upper()))
    except (AttributeError, ValueError, TypeError):
        return logging.WARNING


# Luigi calls videos() and extract_settings on every task of the graph, many times each; the
# memos below make that a dictionary lookup. The directory's mtime is part of the key, so
# adding or removing a video is seen by the next call.


@functools.lru_cache(maxsize=64)
def _extract_settings(blob: str) -> ExtractSettings:
    return ExtractSettings.from_dict(json.loads(blob))


def _dir_key(path: Path) -> tuple:
    try:
        st = path.stat()
    except OSError:
        return ()
    return (st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _discover(path: str, _key: tuple) -> tuple[tuple[str, str], ...]:
    return tuple(discover_videos(path).items())

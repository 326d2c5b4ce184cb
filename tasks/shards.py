"""Sharded per-video tasks: flow and features of K videos per task (pipeline/shards.py).

``FeatureIndex`` requires one ``FeatureShard`` per shard, each of which requires the
``FlowShard`` of the same videos. Every video keeps its own outcome record (pipeline/shards.py),
so a shard is complete when all its videos' records are fresh and reruns only stale videos.
``FlowCache`` / ``VideoFeatures`` at the end are the same tasks for one named video, run by hand. The shard size comes from the ``[shards]`` section of the Luigi config
(configs/luigi.cfg); every worker sharing a scheduler must use the same values.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import luigi

from pipeline.runlog import start_run_log
from pipeline.shards import (
    UpstreamFailed,
    VideoJob,
    plan_shards,
    read_record,
    run_shard,
    shard_size,
    stale_jobs,
)
from tasks.common import PipelineTask
from tasks.videos import MakeDemo, _join_cv2_threads

# Per-video progress: in the run log; the terminal shows only its warnings (pipeline/console.py).
log = logging.getLogger("hamnet.tasks.videos")


class shards(luigi.Config):  # noqa: N801 -- Luigi names the config section after the class
    """``[shards]`` in luigi.cfg, or ``--shards-videos-per-shard K`` on the command line."""

    videos_per_shard = luigi.IntParameter(
        default=100, description="most videos per flow/feature task (docs/pipeline.md, Scaling)"
    )
    min_shards = luigi.IntParameter(
        default=16, description="fewer videos per task when the set would give fewer shards than this"
    )
    max_shards = luigi.IntParameter(
        default=500, description="more videos per task when the set would give more shards than this (0: no limit)"
    )


def shard_tasks(task: PipelineTask) -> list[FeatureShard]:
    """The feature shards covering every video of ``task``'s run."""
    cfg = shards()
    size = shard_size(len(task.videos()), cfg.videos_per_shard, cfg.min_shards, cfg.max_shards)
    return [task.clone(FeatureShard, shard=i, shard_size=size) for i in range(len(_plan(task, size)))]


_PLANS: dict[tuple, list[list[tuple[str, str]]]] = {}


def _plan(task: PipelineTask, size: int) -> list[list[tuple[str, str]]]:
    """The run's shards, computed once per process and video directory state.

    Every shard task asks for its members several times (complete, output, run); listing and
    sorting 20,000 videos for each of 400 shards would make scheduling quadratic again. Keyed
    like the video listing itself (directory mtime and size), so an added file is seen.
    """
    try:
        st = task.videos_path.stat()
        dir_key: tuple = (st.st_mtime_ns, st.st_size)
    except OSError:
        dir_key = ()
    key = (str(task.videos_path), task.is_demo, dir_key, size)
    if key not in _PLANS:
        _PLANS.clear()
        _PLANS[key] = plan_shards(list(task.videos().items()), size)
    return _PLANS[key]


class _ShardTask(PipelineTask):
    shard = luigi.IntParameter(description="shard index (videos in id order, shard_size per shard)")
    shard_size = luigi.IntParameter(description="videos per shard")

    stage = ""

    def data_dir(self) -> Path:
        raise NotImplementedError

    def jobs(self) -> list[VideoJob]:
        plan = _plan(self, self.shard_size)
        if not 0 <= self.shard < len(plan):
            raise ValueError(f"shard {self.shard} out of range: {len(plan)} shards of {self.shard_size} videos")
        members, d = plan[self.shard], self.data_dir()
        return [VideoJob(name, vid, self.videos_path / name, d / f"{vid}.h5") for name, vid in members]

    def output(self):
        return [luigi.LocalTarget(str(j.record)) for j in self.jobs()]

    def complete(self) -> bool:
        return not stale_jobs(self.jobs())

    def _label(self) -> str:
        return f"shard {self.shard + 1}/{len(_plan(self, self.shard_size))}"

    def _run_shard(self, work) -> None:
        start_run_log(self.output_dir)
        _join_cv2_threads()
        self.result = run_shard(self.jobs(), self.stage, work, label=self._label())


class FlowShard(_ShardTask):
    """Quantised TV-L1 flow of the shard's videos: ``flow/<flow_key>/<id>.h5`` + ``<id>.json``."""

    stage = "flow"

    @property
    def resources(self):
        s = self.extract_settings
        return self.gpu_resources(s.device) if s.flow_backend == "torch" else {}

    def requires(self):
        return [self.clone(MakeDemo)] if self.is_demo else []

    def data_dir(self) -> Path:
        return self.root / "flow" / self.extract_settings.flow_key()

    def run(self):
        from pipeline.extract import write_flow_cache

        settings = self.extract_settings

        def work(job: VideoJob) -> None:
            log.info("computing flow for %s (%s)", job.video_id, job.source)
            write_flow_cache(job.source, job.data, settings, progress=True)

        self._run_shard(work)


class FeatureShard(_ShardTask):
    """Features of the shard's videos (I3D RGB + flow, or an RGB-only backbone): ``features/<feature_key>/<id>.h5`` + ``<id>.json``."""

    stage = "features"
    flow_task: type[_ShardTask] = FlowShard

    @property
    def resources(self):
        return self.gpu_resources(self.extract_settings.device)

    def requires(self):
        if not self.extract_settings.needs_flow:  # RGB-only backbone: no flow stage at all
            return [self.clone(MakeDemo)] if self.is_demo else []
        return self.clone(self.flow_task)

    def data_dir(self) -> Path:
        return self.root / "features" / self.extract_settings.feature_key()

    def run(self):
        from extractors.checkpoints import cached_backbones
        from pipeline.extract import write_video_features
        from storage.featstore import read_features

        settings = self.extract_settings
        flow_dir = self.clone(self.flow_task).data_dir() if settings.needs_flow else None

        def work(job: VideoJob) -> dict[str, Any]:
            flow_cache = None
            if flow_dir is not None:
                flow_cache = flow_dir / f"{job.video_id}.h5"
                flow = read_record(flow_cache.with_suffix(".json"))
                if flow is None:
                    raise RuntimeError(f"{flow_cache.with_suffix('.json')}: flow record vanished or is unreadable")
                if flow["status"] != "ok":
                    # The flow stage already found this video bad: carry its reason, do not retry.
                    raise UpstreamFailed(flow["reason"], "flow")
            log.info("extracting features for %s (%s)", job.video_id, job.source)
            write_video_features(
                job.source,
                job.data,
                settings,
                video_id=job.video_id,
                flow_cache=flow_cache,
                progress=True,
                models=cached_backbones(settings),
            )
            f = read_features(job.data)
            return {
                "num_snippets": f.num_snippets,
                "duration": float(f.attrs["duration"]),
                "seconds_per_snippet": f.seconds_per_snippet,
                # damaged-stream warnings of decoding: into the record, the index and the summary
                "warnings": list((f.settings.get("decode") or {}).get("warnings") or []),
            }

        self._run_shard(work)


# ---- one video by hand ----------------------------------------------------------------------
# The same work as the shards, for one named video (``luigi --module tasks VideoFeatures
# --video-name a.mp4 --video-id a``); the records they write are the shards' own.


class _OneVideo(_ShardTask):
    video_name = luigi.Parameter(description="file name inside the video directory")
    video_id = luigi.Parameter(description="safe id (storage.featstore.assign_video_ids)")
    shard = luigi.IntParameter(default=0, description="unused: one video")
    shard_size = luigi.IntParameter(default=1, description="unused: one video")

    def jobs(self) -> list[VideoJob]:
        d = self.data_dir()
        return [VideoJob(self.video_name, self.video_id, self.videos_path / self.video_name, d / f"{self.video_id}.h5")]

    def _label(self) -> str:
        return f"video {self.video_id}"


class FlowCache(_OneVideo, FlowShard):
    """Quantised TV-L1 flow of one video: ``flow/<flow_key>/<id>.h5`` + ``<id>.json``."""


class VideoFeatures(_OneVideo, FeatureShard):
    """Features of one video: ``features/<feature_key>/<id>.h5`` + ``<id>.json``."""

    flow_task = FlowCache

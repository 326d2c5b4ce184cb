"""Per-video tasks: the demo set, the flow cache and the features of one video.

A per-video task's output is an *outcome record* (``<id>.json``), written last and atomically:
``status: ok`` with the data file beside it, or ``status: failed`` with the reason when the
video is bad input (:class:`extractors.errors.VideoError`). Bad input therefore does not stop
the run: the dataset-level tasks use the ok videos and the final ``RunAll`` lists the failed
ones and exits non-zero. Anything else (a bug, out of memory) fails the task as usual, writes
no record and is retried on the next run. The record also holds the source file's size and
mtime; a changed file makes its records stale, so it is extracted again.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import luigi

from core.atomic import remove_stale_partials, write_json_atomic
from pipeline.runlog import start_run_log
from pipeline.videos import read_record, source_stat
from tasks.common import DEMO_SPEC, PipelineTask

# Per-video progress: in the run log; the terminal shows only its warnings (pipeline/console.py).
log = logging.getLogger("hamnet.tasks.videos")


class MakeDemo(PipelineTask):
    """Synthesise the demo videos, labels and ground truth (used when no --video-dir is given)."""

    def output(self):
        return luigi.LocalTarget(str(self.demo_dir / "spec.json"))

    def run(self):
        from pipeline.demo import synthesize_demo

        start_run_log(self.output_dir)
        log.info("synthesising the demo set in %s", self.demo_dir)
        synthesize_demo(self.demo_dir, DEMO_SPEC, progress=True)


class _VideoTask(PipelineTask):
    video_name = luigi.Parameter(description="file name inside the video directory")
    video_id = luigi.Parameter(description="safe id (storage.featstore.assign_video_ids)")

    stage = ""

    @property
    def source(self) -> Path:
        return self.videos_path / self.video_name

    def data_path(self) -> Path:
        raise NotImplementedError

    def output(self):
        return luigi.LocalTarget(str(self.data_path().with_suffix(".json")))

    def complete(self) -> bool:
        rec = read_record(self.output().path)
        if rec is None or rec.get("source_stat") != source_stat(self.source):
            return False
        return rec["status"] != "ok" or self.data_path().is_file()

    def _record(self, status: str, reason: str = "", **extra: Any) -> dict[str, Any]:
        return {
            "video_id": self.video_id,
            "source": self.video_name,
            "stage": self.stage,
            "status": status,
            "reason": reason,
            "source_stat": source_stat(self.source),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            **extra,
        }

    def _run_guarded(self, work) -> None:
        """Run ``work()``; bad input becomes a failure record instead of a task failure."""
        from extractors.errors import VideoError

        start_run_log(self.output_dir)
        _join_cv2_threads()
        out, data = Path(self.output().path), self.data_path()
        remove_stale_partials(out)
        remove_stale_partials(data)
        started = time.time()
        try:
            extra = work() or {}
            rec = self._record("ok", data=data.name, **extra)
            log.info("%s ok: %s (%.1f s)", self.stage, self.video_id, time.time() - started)
        except VideoError as e:
            data.unlink(missing_ok=True)  # never leave a data file that could pass for a result
            rec = self._record("failed", e.reason)
            log.warning("%s FAILED: %s: %s", self.stage, self.video_id, e)
        rec.update(started=started, finished=time.time())
        write_json_atomic(out, rec)


class FlowCache(_VideoTask):
    """Quantised TV-L1 flow of one video: ``flow/<flow_key>/<id>.h5``."""

    stage = "flow"

    @property
    def resources(self):
        s = self.extract_settings
        return self.gpu_resources(s.device) if s.flow_backend == "torch" else {}

    def requires(self):
        return [self.clone(MakeDemo)] if self.is_demo else []

    def data_path(self) -> Path:
        return self.root / "flow" / self.extract_settings.flow_key() / f"{self.video_id}.h5"

    def run(self):
        from pipeline.extract import write_flow_cache

        log.info("computing flow for %s (%s)", self.video_id, self.source)
        self._run_guarded(
            lambda: write_flow_cache(self.source, self.data_path(), self.extract_settings, progress=True) and None
        )


class VideoFeatures(_VideoTask):
    """Features of one video (I3D RGB + flow, or an RGB-only backbone) in the feature store:
    ``features/<feature_key>/<id>.h5``."""

    stage = "features"

    @property
    def resources(self):
        return self.gpu_resources(self.extract_settings.device)

    def requires(self):
        if not self.extract_settings.needs_flow:  # RGB-only backbone: no flow stage at all
            return [self.clone(MakeDemo)] if self.is_demo else []
        return self.clone(FlowCache)

    def data_path(self) -> Path:
        return self.root / "features" / self.extract_settings.feature_key() / f"{self.video_id}.h5"

    def run(self):
        if not self.extract_settings.needs_flow:
            return self._extract(flow_cache=None)
        flow = read_record(self.input().path)
        if flow is None:
            raise RuntimeError(f"{self.input().path}: flow record vanished or is unreadable")
        if flow["status"] != "ok":
            # The flow stage already found this video bad: carry its reason, do not retry.
            start_run_log(self.output_dir)
            remove_stale_partials(self.output().path)
            rec = self._record("failed", flow["reason"], failed_stage="flow")
            write_json_atomic(self.output().path, rec)
            log.warning("features FAILED: %s: %s", self.video_id, flow["reason"])
            return
        self._extract(flow_cache=Path(self.input().path).with_suffix(".h5"))

    def _extract(self, flow_cache: Path | None) -> None:
        from extractors.checkpoints import cached_backbones
        from pipeline.extract import write_video_features
        from storage.featstore import read_features

        def work():
            log.info("extracting features for %s (%s)", self.video_id, self.source)
            write_video_features(
                self.source,
                self.data_path(),
                self.extract_settings,
                video_id=self.video_id,
                flow_cache=flow_cache,
                progress=True,
                models=cached_backbones(self.extract_settings),
            )
            f = read_features(self.data_path())
            return {
                "num_snippets": f.num_snippets,
                "duration": float(f.attrs["duration"]),
                "seconds_per_snippet": f.seconds_per_snippet,
                # damaged-stream warnings of decoding (issue 10): into the record, index and summary
                "warnings": list((f.settings.get("decode") or {}).get("warnings") or []),
            }

        self._run_guarded(work)


def _join_cv2_threads() -> None:
    """Stop OpenCV's worker threads before extraction forks its TV-L1 process pool.

    Luigi runs many tasks in one process: once a task has used OpenCV's thread pool (resizing
    while decoding), a child forked later inherits that pool's locks without its threads and
    hangs in ``cv2.setNumThreads`` (seen as a stuck FlowCache task). One OpenCV thread in the
    task process costs little: the heavy work (TV-L1) runs in the pool's processes.
    """
    import cv2

    cv2.setNumThreads(1)

"""The demo set, and what every extraction task does first in its process.

Flow and features of videos are the shard tasks in tasks/shards.py (also one video at a time:
``FlowCache`` / ``VideoFeatures``); their per-video outcome records are described there and in
pipeline/shards.py.
"""

from __future__ import annotations

import logging

import luigi

from pipeline.runlog import start_run_log
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


def _join_cv2_threads() -> None:
    """Stop OpenCV's worker threads before extraction forks its TV-L1 process pool.

    Luigi runs many tasks in one process: once a task has used OpenCV's thread pool (resizing
    while decoding), a child forked later inherits that pool's locks without its threads and
    hangs in ``cv2.setNumThreads`` (seen as a stuck FlowCache task). One OpenCV thread in the
    task process costs little: the heavy work (TV-L1) runs in the pool's processes.
    """
    import cv2

    cv2.setNumThreads(1)

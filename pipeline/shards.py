"""Per-video work grouped into shards: K videos per Luigi task instead of one task per video.

Why: Luigi's scheduler walks every task on every ``get_work`` call, so its CPU cost grows with
the square of the number of tasks (measured in docs/pipeline.md, "Scaling"). One task per
video and stage made 20,000 videos cost hours of scheduling alone; a shard of K videos per
stage keeps the task count at ``2 * ceil(N / K) + 1`` for the feature index.

What does not change: every video still gets its own *outcome record* (``<id>.json``, written
last and atomically, ``ok`` or ``failed`` with the reason), with the same fields as the
per-video tasks wrote, so the index, reports and reruns read the same files. A shard is
complete when every one of its videos has a fresh record; when it runs, it redoes only its
stale videos. The scheduler hands a shard to one worker, so each video is still extracted
once with several workers.

The functions here know nothing about Luigi; ``tasks/shards.py`` wraps them.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.atomic import PARTIAL_SUFFIX, write_json_atomic
from pipeline.videos import read_record, source_stat

# Per-video and per-shard progress: run log only; warnings still reach the terminal (pipeline/console.py).
log = logging.getLogger("hamnet.tasks.videos")


# --------------------------------------------------------------------------- grouping


def shard_size(num_videos: int, videos_per_shard: int, min_shards: int, max_shards: int = 0) -> int:
    """Videos per shard: ``videos_per_shard``, fewer when that would give too few shards, more
    when it would give too many.

    ``min_shards`` keeps small sets (the demo, THUMOS14's 413 videos) spread over enough tasks
    that several workers share them; ``max_shards`` (0: no limit) bounds the number of tasks
    for very large sets (Kinetics-sized), since scheduling cost grows with its square.
    """
    if videos_per_shard < 1 or min_shards < 1 or max_shards < 0:
        raise ValueError(
            "[shards] videos_per_shard and min_shards must be >= 1 and max_shards >= 0, got "
            f"{videos_per_shard}, {min_shards}, {max_shards}"
        )
    size = min(videos_per_shard, math.ceil(num_videos / min_shards))
    if max_shards:
        size = max(size, math.ceil(num_videos / max_shards))
    return max(1, size)


def plan_shards(videos: Sequence[tuple[str, str]], size: int) -> list[list[tuple[str, str]]]:
    """Group (file name, video id) pairs into shards: consecutive runs of the id-sorted list.

    Membership may shift when videos are added; that is harmless because completeness is
    decided per video (by its record), never per shard.
    """
    ordered = sorted(videos, key=lambda nv: nv[1])
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class VideoJob:
    """One video of a shard at one stage: where its source, data file and outcome record live."""

    name: str
    video_id: str
    source: Path
    data: Path

    @property
    def record(self) -> Path:
        return self.data.with_suffix(".json")


def is_fresh(job: VideoJob) -> bool:
    """The video's record exists, matches the source file's size and mtime, and an ``ok``
    record has its data file: the same rule as the per-video tasks' ``complete``."""
    rec = read_record(job.record)
    if rec is None or rec.get("source_stat") != source_stat(job.source):
        return False
    return rec["status"] != "ok" or job.data.is_file()


def stale_jobs(jobs: Iterable[VideoJob]) -> list[VideoJob]:
    return [j for j in jobs if not is_fresh(j)]


def outcome_record(job: VideoJob, stage: str, status: str, reason: str = "", **extra: Any) -> dict[str, Any]:
    """The record fields of the per-video tasks (tasks/videos.py), so readers need not care
    which task wrote it."""
    return {
        "video_id": job.video_id,
        "source": job.name,
        "stage": stage,
        "status": status,
        "reason": reason,
        "source_stat": source_stat(job.source),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        **extra,
    }


def remove_partials_of(jobs: Sequence[VideoJob]) -> list[Path]:
    """Delete what killed writers of these jobs' records and data files left behind.

    One directory scan per folder and shard, not per file: ``glob`` per video would list a
    20,000-entry folder 40,000 times. Safe because the scheduler gives a shard (and so its
    videos) to one worker at a time.
    """
    wanted: dict[Path, set[str]] = {}
    for j in jobs:
        for p in (j.record, j.data):
            wanted.setdefault(p.parent, set()).add(p.name)
    removed = []
    for folder, names in wanted.items():
        try:
            entries = os.listdir(folder)  # one C-level listing; the filter below is the hot loop
        except FileNotFoundError:
            continue
        for n in [n for n in entries if n.endswith(PARTIAL_SUFFIX)]:
            # .<name>.<random>.partial (core.atomic.atomic_path; the random part has no dot)
            target = n[1 : -len(PARTIAL_SUFFIX)].rsplit(".", 1)[0]
            path = folder / n
            if n.startswith(".") and target in names and path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


# --------------------------------------------------------------------------- running


class UpstreamFailed(Exception):
    """An earlier stage already found this video bad: record its reason instead of retrying."""

    def __init__(self, reason: str, stage: str):
        super().__init__(reason)
        self.reason, self.stage = reason, stage


class ShardError(RuntimeError):
    """Some videos of a shard raised something other than bad input; they have no record and
    are retried on the next run. The shard's other videos were finished and recorded."""


@dataclass
class ShardResult:
    """What one shard run did: the videos it ran (stale ones only) and their outcomes."""

    ran: list[str] = field(default_factory=list)
    ok: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


def run_video(job: VideoJob, stage: str, work: Callable[[VideoJob], dict[str, Any] | None]) -> dict[str, Any]:
    """Run ``work(job)`` and write the video's outcome record last. Returns the record.

    Bad input (:class:`extractors.errors.VideoError`) and :class:`UpstreamFailed` become a
    ``failed`` record and no data file; any other exception propagates with no record written.
    """
    from extractors.errors import VideoError

    started = time.time()
    try:
        extra = work(job) or {}
        rec = outcome_record(job, stage, "ok", data=job.data.name, **extra)
        log.info("%s ok: %s (%.1f s)", stage, job.video_id, time.time() - started)
    except UpstreamFailed as e:
        job.data.unlink(missing_ok=True)
        rec = outcome_record(job, stage, "failed", e.reason, failed_stage=e.stage)
        log.warning("%s FAILED: %s: %s", stage, job.video_id, e.reason)
    except VideoError as e:
        job.data.unlink(missing_ok=True)  # never leave a data file that could pass for a result
        rec = outcome_record(job, stage, "failed", e.reason)
        log.warning("%s FAILED: %s: %s", stage, job.video_id, e)
    rec.update(started=started, finished=time.time())
    write_json_atomic(job.record, rec)
    return rec


def run_shard(
    jobs: Sequence[VideoJob],
    stage: str,
    work: Callable[[VideoJob], dict[str, Any] | None],
    *,
    label: str = "shard",
) -> ShardResult:
    """Run the stale videos of a shard, one after the other; raise :class:`ShardError` at the end
    if any raised an unexpected error.

    One video's bug or out-of-memory does not stop the others: they are finished and recorded,
    so the rerun redoes only the failing ones (and whatever else went stale meanwhile).
    """
    todo = stale_jobs(jobs)
    log.info("%s %s: %d of %d videos to do", stage, label, len(todo), len(jobs))
    remove_partials_of(todo)
    res = ShardResult()
    for i, job in enumerate(todo, 1):
        log.info("%s %s: video %d/%d: %s", stage, label, i, len(todo), job.video_id)
        res.ran.append(job.video_id)
        try:
            rec = run_video(job, stage, work)
        except Exception as e:  # noqa: BLE001 -- reported below; the shard fails after its other videos
            log.exception("%s ERROR (no record written, retried on rerun): %s", stage, job.video_id)
            res.errors.append((job.video_id, f"{type(e).__name__}: {e}"))
            continue
        (res.ok if rec["status"] == "ok" else res.failed).append(job.video_id)
    log.info("%s %s done: %d ok, %d bad input, %d errors", stage, label, len(res.ok), len(res.failed), len(res.errors))
    if res.errors:
        raise ShardError(
            f"{stage} {label}: {len(res.errors)} of {len(todo)} videos raised errors "
            f"(the other videos are recorded): " + "; ".join(f"{v}: {msg}" for v, msg in res.errors[:10])
        )
    return res

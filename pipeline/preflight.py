"""The preflight: every check that needs no decoding, run before any per-video work.

A run that will fail on its inputs must fail in seconds, not after hours of TV-L1. The Luigi
tasks call :func:`preflight_once` when the first task of a command is built (before Luigi
schedules anything); command lines can call :func:`run_preflight` directly. Every problem is
collected (not just the first), each naming its file or key, and reported in one message.

Checked: the merged config (keys, types, ranges: ``pipeline.config.validate_config``), both
I3D checkpoints (exist, load with ``weights_only=True``, fit the network), the video directory
(exists, holds videos), the labels CSV (encoding, header, separator, every labelled name
resolving to exactly one video), the ground truth (parses, names resolve to exactly one video)
and the free disk space under the output root against a rough estimate of what the run writes.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("hamnet.preflight")

# Exit code of a command stopped by the preflight (nothing was run); docs/pipeline.md.
EXIT_PREFLIGHT = 2

RANDOM_BACKBONE_BANNER = (
    "extract.random_backbone is on: features come from a seeded RANDOM I3D, so they (and every "
    "result) are meaningless outside demos and tests"
)


class PreflightError(ValueError):
    """The inputs of a run are unusable; ``problems`` lists each one, naming its file or key."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        n = len(self.problems)
        super().__init__(
            f"{n} problem{'s' if n > 1 else ''} found before any work was done:\n"
            + "\n".join(f"  - {p}" for p in self.problems)
        )


@dataclass
class PreflightResult:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def check_checkpoints(extract: Mapping[str, Any]) -> list[str]:
    """Problems with the I3D weights of an ``extract`` config section (all of them, not the first)."""
    if extract.get("random_backbone"):
        return []
    from extractors.checkpoints import CheckpointError, load_i3d_checkpoint

    problems = []
    for key, channels in (("rgb_checkpoint", 3), ("flow_checkpoint", 2)):
        path = extract.get(key)
        if not path:
            problems.append(
                f"extract.{key} is not set: pass the Kinetics I3D weights (piergiaj rgb_imagenet.pt / "
                "flow_imagenet.pt or hassony2 model_rgb.pth / model_flow.pth), e.g. "
                f'--overrides "extract.{key}=PATH", or extract.random_backbone=true for a demo'
            )
        elif not Path(path).is_file():
            problems.append(f"extract.{key}: {path}: file not found")
        else:
            try:
                load_i3d_checkpoint(path, channels, check_only=True)
            except CheckpointError as e:
                problems.append(f"extract.{key}: {e}")
    return problems


def check_labels(
    path: Path, videos: Mapping[str, str], *, ignore_unmatched: bool = False
) -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` of a labels CSV against the videos of the run.

    A labelled name that matches no video is an error unless ``ignore_unmatched`` (then a
    warning): a typo in a name would otherwise silently shrink the training set.
    """
    from pipeline.videos import resolve_video_keys
    from storage.labels import LabelsError, read_labels_csv

    try:
        labels = read_labels_csv(path)
    except LabelsError as e:
        return [str(e)], []
    matched, unmatched, ambiguous = resolve_video_keys(labels, videos)
    errors = [
        f"{path}: {k!r} matches {len(v)} videos ({', '.join(v)}); name the file instead" for k, v in ambiguous.items()
    ]
    warnings = []
    if unmatched:
        msg = (
            f"{path}: {len(unmatched)} of {len(labels)} labelled videos are not in the video directory: "
            f"{_first(unmatched)}"
        )
        if ignore_unmatched:
            warnings.append(msg + " (ignored: --ignore-unmatched-labels)")
        else:
            errors.append(msg + " (fix the names, or pass --ignore-unmatched-labels to train without them)")
    if not matched and not ambiguous:
        errors.append(f"{path}: no labelled video is in the video directory; nothing to train on")
    elif matched and not any(labels[k] for k in matched):
        errors.append(f"{path}: the labelled videos carry no label at all; nothing to train on")
    return errors, warnings


def check_ground_truth(path: Path, videos: Mapping[str, str], subset: str = "") -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` of a ground-truth JSON against the videos of the run."""
    from core.activitynet import AnnotationError, read_ground_truth_json
    from pipeline.videos import resolve_video_keys

    try:
        db = read_ground_truth_json(path)["database"]
    except AnnotationError as e:
        return [str(e)], []
    if subset:
        db = {k: v for k, v in db.items() if v.get("subset") == subset}
        if not db:
            return [f"{path}: no video in subset {subset!r}"], []
    matched, unmatched, ambiguous = resolve_video_keys(db, videos)
    errors = [
        f"{path}: {k!r} matches {len(v)} videos ({', '.join(v)}); name the file instead" for k, v in ambiguous.items()
    ]
    warnings = []
    if not matched and not ambiguous:
        errors.append(f"{path}: no ground-truth video is in the video directory; nothing to evaluate")
    elif unmatched:
        # Normal for THUMOS14 (one file for validation and test): reported, not an error.
        warnings.append(
            f"{path}: {len(unmatched)} ground-truth videos are not in the video directory and are not evaluated"
        )
    return errors, warnings


def estimate_output_bytes(video_bytes: int, num_videos: int) -> int:
    """A rough upper estimate of what a run writes: flow caches and features of every video.

    Quantised flow at 224 px crop is about as large as a compressed 25 fps source video of
    THUMOS-like bitrate, features are small, so the estimate is the videos' own size plus
    1 MB per video for features, records and results.
    """
    return int(video_bytes + num_videos * 1_000_000)


def check_disk(output_dir: Path, video_dir: Path | None, videos: Mapping[str, str]) -> list[str]:
    """A warning when the free space under the output root is below the rough estimate."""
    if video_dir is None or not videos:
        return []
    total = 0
    for name in videos:
        try:
            total += (video_dir / name).stat().st_size
        except OSError:
            pass
    probe = output_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    need = estimate_output_bytes(total, len(videos))
    if free < need:
        return [
            f"{output_dir}: {_size(free)} free, the run may write about {_size(need)} "
            "(flow caches and features); it stops with 'no space left on device' if space runs out"
        ]
    return []


def run_preflight(
    *,
    config_name: str,
    overrides: str,
    output_dir: str | os.PathLike,
    video_dir: str | os.PathLike | None,
    labels: str | os.PathLike | None,
    ground_truth: str | os.PathLike | None,
    subset: str = "",
    ignore_unmatched_labels: bool = False,
) -> PreflightResult:
    """Run every check; ``video_dir`` None means the inputs are generated (the demo) and trusted."""
    from pipeline.config import ConfigError, load_config_cached
    from pipeline.videos import discover_videos

    started = time.perf_counter()
    res = PreflightResult()
    try:
        cfg = load_config_cached(config_name, overrides)
    except ConfigError as e:
        res.errors.append(str(e))
        cfg = None
    if cfg is not None:
        res.errors += check_checkpoints(cfg["extract"])
        if cfg["extract"].get("random_backbone"):
            res.warnings.append(RANDOM_BACKBONE_BANNER)
    if video_dir is not None:
        videos: dict[str, str] = {}
        try:
            videos = discover_videos(video_dir)
        except FileNotFoundError as e:
            res.errors.append(str(e))
        if videos:
            if labels:
                e_, w_ = check_labels(Path(labels), videos, ignore_unmatched=ignore_unmatched_labels)
                res.errors += e_
                res.warnings += w_
            if ground_truth:
                e_, w_ = check_ground_truth(Path(ground_truth), videos, subset)
                res.errors += e_
                res.warnings += w_
            res.warnings += check_disk(Path(output_dir), Path(video_dir), videos)
    res.seconds = time.perf_counter() - started
    return res


_DONE: dict[tuple, PreflightResult] = {}


def preflight_once(**kwargs: Any) -> PreflightResult:
    """:func:`run_preflight` once per process and set of inputs; logs warnings, raises on errors.

    Luigi builds many task objects per command; only the first one with a given set of inputs
    pays for the checks (loading two checkpoints takes about a second).
    """
    key = tuple(sorted((k, str(v)) for k, v in kwargs.items()))
    if key in _DONE:
        return _DONE[key]
    res = run_preflight(**kwargs)
    for w in res.warnings:
        log.warning("%s", w)
    if res.errors:
        raise PreflightError(res.errors)
    log.debug("preflight passed in %.2f s", res.seconds)
    _DONE[key] = res
    return res


def _size(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def _first(items: list[str], n: int = 5) -> str:
    shown = ", ".join(repr(i) for i in items[:n])
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")

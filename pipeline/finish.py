"""The end of a run: fixed output paths for people, and the short block the terminal ends with.

The hash-named folders (``localize/<hash>/``...) make reruns exact, but nobody should have to
find them: the latest run's results are published at fixed places under the output root::

    report.html  results.json  summary.txt  segments/<video-id>.csv

and the terminal's last lines say what ran, how many videos succeeded, the mAP, and where
these files are. ``summary.txt`` carries the same block plus the per-video table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core.atomic import copy_file_atomic
from pipeline.report import VideoOutcome


def publish_segments(csv_dir: str | os.PathLike, dest: str | os.PathLike) -> int:
    """Copy the run's per-video CSVs to ``dest`` (atomic per file); drop CSVs of other runs there.

    Returns the number of CSVs. A stale CSV from an earlier run with other videos would be
    mistaken for a result of this one, so ``dest`` ends up holding exactly this run's files.
    """
    src, out = Path(csv_dir), Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    names = {p.name for p in src.glob("*.csv")} if src.is_dir() else set()
    for name in sorted(names):
        copy_file_atomic(src / name, out / name)
    for old in out.glob("*.csv"):
        if old.name not in names:
            old.unlink(missing_ok=True)
    return len(names)


def map_lines(metrics: Mapping[str, Any] | None) -> list[str]:
    """``mAP@tIoU 0.1 0.2 ...`` / ``     (%) 70.1 ...  avg 63.8`` or a line saying there is none."""
    if not metrics:
        return ["mAP: no ground truth given (--ground-truth), so no evaluation"]
    ts = [float(t) for t in metrics["tiou_thresholds"]]
    ms = [100.0 * float(m) for m in metrics["map"]]
    head = "mAP (%) @ tIoU " + " ".join(f"{t:5.2f}" for t in ts) + "    avg"
    vals = "               " + " ".join(f"{m:5.1f}" for m in ms) + f"  {100.0 * float(metrics['average_map']):5.1f}"
    return [head, vals, f"  on {metrics.get('num_videos', '?')} ground-truth videos ({metrics.get('mode', '')} mode)"]


def final_block(
    *,
    root: Path,
    outcomes: Sequence[VideoOutcome],
    skipped: Sequence[tuple[str, str]],
    metrics: Mapping[str, Any] | None,
    num_csv: int,
    log_path: Path | None,
    random_backbone: bool,
    video_warnings: Sequence[str] = (),
) -> str:
    """The closing block of a run (terminal and the top of ``summary.txt``)."""
    ok = [o for o in outcomes if o.status == "ok"]
    failed = [o for o in outcomes if o.status != "ok"]
    lines = ["=" * 20 + " HAM-Net run summary " + "=" * 20]
    lines.append(f"videos: {len(ok)} ok, {len(failed)} failed, {len(skipped)} files skipped (not videos)")
    for o in failed[:5]:
        lines.append(f"  FAILED {o.source}: {o.reason}")
    if len(failed) > 5:
        lines.append(f"  ... {len(failed) - 5} more failures in summary.txt")
    if video_warnings:
        lines.append(f"WARNING: {len(video_warnings)} decoding warnings (damaged or truncated files), e.g.:")
        lines += [f"  {w}" for w in video_warnings[:3]]
    lines += map_lines(metrics)
    if random_backbone:
        lines.append(
            "WARNING: features come from a seeded RANDOM I3D backbone: the numbers are meaningless outside demos"
        )
    lines += [
        f"report:       {root / 'report.html'}",
        f"results:      {root / 'results.json'}",
        f"segments:     {root / 'segments'}/<video-id>.csv ({num_csv} files)",
        f"summary:      {root / 'summary.txt'}",
    ]
    if log_path is not None:
        lines.append(f"log:          {log_path}")
    return "\n".join(lines) + "\n"

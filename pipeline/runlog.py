"""Per-run log files and the plain-text run summary.

(Atomic writes and the clean-up of a killed writer's temporary files are in core/atomic.py.)
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.output_root import check_output_root
from pipeline.report import VideoOutcome

log = logging.getLogger("hamnet.pipeline")

_LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
_active: dict[str, Any] = {"pid": None, "root": None, "handler": None, "path": None}


def start_run_log(output_dir: str | os.PathLike) -> Path:
    """Send this process's log records (ours and Luigi's) to ``<output_dir>/logs/run-<UTC>-<pid>.log``.

    Idempotent within a process and output directory. Worker processes forked by Luigi inherit
    the handler, so one ``luigi`` command writes one log; a second worker command started
    beside it (scale-out) writes its own. The output root is checked first
    (:func:`pipeline.output_root.check_output_root`): an unsafe root stops the command here.
    """
    root = str(Path(output_dir).resolve())
    if _active["root"] == root:  # also in worker processes forked from the one that opened it
        return _active["path"]
    check_output_root(root)
    if _active["handler"] is not None:
        logging.getLogger().removeHandler(_active["handler"])
        _active["handler"].close()
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = Path(root) / "logs" / f"run-{stamp}-{os.getpid()}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _RunLogHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    handler.setLevel(logging.INFO)
    top = logging.getLogger()
    top.addHandler(handler)
    if top.level > logging.INFO or top.level == logging.NOTSET:
        top.setLevel(logging.INFO)
    log.setLevel(logging.INFO)
    _active.update(pid=os.getpid(), root=root, handler=handler, path=path)
    return path


class _RunLogHandler(logging.FileHandler):
    """The run log's handler: when the disk is full, one line on stderr instead of a traceback per record."""

    def handleError(self, record: logging.LogRecord) -> None:
        import sys

        if not getattr(self, "_failed", False):
            self._failed = True
            print(
                f"WARNING: cannot write the run log {self.baseFilename} (disk full?); it misses later lines",
                file=sys.stderr,
            )


def format_summary(outcomes: Sequence[VideoOutcome], skipped: Iterable[tuple[str, str]] = ()) -> str:
    """A plain-text table of every video and its outcome, plus files not treated as videos."""
    skipped = list(skipped)
    ok = sum(o.status == "ok" for o in outcomes)
    lines = [f"videos: {len(outcomes)}  ok: {ok}  failed: {len(outcomes) - ok}  skipped files: {len(skipped)}", ""]
    width = max([len(o.video_id) for o in outcomes] + [8])
    for o in outcomes:
        detail = o.reason if o.status != "ok" else f"{o.num_snippets} snippets, {o.duration:.1f} s"
        if o.status == "ok" and o.num_segments is not None:
            detail += f", {o.num_segments} segments"
        lines.append(f"{o.status.upper():7s} {o.video_id:{width}s}  {detail}  [{o.source}]")
    for name, why in skipped:
        lines.append(f"SKIPPED {name}: {why}")
    return "\n".join(lines) + "\n"


def outcomes_from(index: Mapping[str, Any], results: Mapping[str, Any] | None = None) -> list[VideoOutcome]:
    """One outcome per video of a feature index, with its segment count when localized."""
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

"""What the terminal shows during a run: the project's story, not the scheduler's chatter.

* The project's loggers (``hamnet.*``) go to stderr at INFO, one plain line each, every
  distinct warning once per process; Luigi's own loggers go to stderr only from the level
  the command asks for (``--log-level``, default WARNING in configs/luigi.cfg). The run log
  file (pipeline/runlog.py) still gets everything at INFO.
* A user mistake (a bad file, key or path: :data:`user_error_types`) is shown as one line,
  without a traceback; a bug keeps its traceback.
* SIGTERM is turned into ``KeyboardInterrupt`` so that a ``kill`` unwinds like Ctrl-C: the
  ``with`` blocks close (the TV-L1 pool is stopped, temporary files are removed) and the
  command prints one line instead of a traceback.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

_state: dict[str, Any] = {"handler": None, "signals": False}

INTERRUPTED_MESSAGE = "interrupted: partial files were removed; run the same command again to resume"


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that describe bad input (their message names the file or key), not a bug."""
    from core.activitynet import AnnotationError
    from extractors.checkpoints import CheckpointError
    from extractors.errors import VideoError
    from pipeline.config import ConfigError
    from pipeline.preflight import PreflightError
    from pipeline.videos import AmbiguousVideoKey
    from storage.featstore import FeatureStoreError
    from storage.labels import LabelsError

    types: list[type[BaseException]] = [
        AnnotationError,
        CheckpointError,
        VideoError,
        ConfigError,
        PreflightError,
        AmbiguousVideoKey,
        FeatureStoreError,
        LabelsError,
    ]
    return tuple(types)


def is_user_error(exc: BaseException | None) -> bool:
    """True for bad-input exceptions, for ``VideosFailed`` (by name: it lives in tasks/) and disk full."""
    if exc is None:
        return False
    if isinstance(exc, OSError) and exc.errno == 28:  # ENOSPC
        return True
    if any(c.__name__ == "VideosFailed" for c in type(exc).__mro__):
        return True
    return isinstance(exc, user_error_types())


class _Console(logging.Formatter):
    """``message`` for INFO, ``WARNING: message`` above; tracebacks only for bugs."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.WARNING:
            msg = f"{record.levelname}: {msg}"
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            if is_user_error(exc) or isinstance(exc, KeyboardInterrupt):
                return f"{msg.splitlines()[0]}\n  {exc}" if "failed" in msg else f"{msg}: {exc}"
            return msg + "\n" + self.formatException(record.exc_info)  # type: ignore[arg-type]
        return msg


# Loggers whose INFO lines (one or more per video) go to the run log only: on 1,000 videos
# they would bury the story. Their warnings (a failed video) still reach the terminal.
FILE_ONLY_INFO = ("hamnet.tasks.videos", "extractors")


class _OncePerRun(logging.Filter):
    """Drop a warning the console has already shown (the file log keeps every copy)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return not record.name.startswith(FILE_ONLY_INFO)
        key = record.getMessage()
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


class _LuigiFailures(logging.Filter):
    """Luigi's "[pid N] Worker Worker(salt=..., ...) failed TASK(...)" record, made readable.

    A user error becomes ``ERROR: TaskFamily failed: message`` (no traceback); a bug keeps its
    traceback. Applied on the console handler only, so the file log keeps Luigi's record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and (is_user_error(exc) or isinstance(exc, KeyboardInterrupt)):
            task = record.args[-1] if isinstance(record.args, tuple) and record.args else None
            family = getattr(task, "task_family", None) or "a task"
            record.msg, record.args, record.exc_info, record.exc_text = f"{family} failed: {exc}", (), None, None
        return True


def install_console(luigi_level: int = logging.WARNING, stream: TextIO | None = None) -> None:
    """Set up the terminal for this process (idempotent): see the module docstring."""
    if _state["handler"] is not None:
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Console())
    handler.addFilter(_OncePerRun())
    handler.setLevel(logging.INFO)
    ours = logging.getLogger("hamnet")
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    logging.getLogger("extractors").addHandler(handler)  # decoding warnings name the damaged file
    # Luigi's loggers: their records reach the run log through the root logger; the console
    # shows them from ``luigi_level`` on, user errors as one line.
    luigi_handler = logging.StreamHandler(stream or sys.stderr)
    luigi_handler.setFormatter(_Console())
    luigi_handler.addFilter(_LuigiFailures())
    luigi_handler.setLevel(luigi_level)
    for name in ("luigi-interface", "luigi"):
        lg = logging.getLogger(name)
        lg.addHandler(luigi_handler)
        lg.setLevel(min(luigi_level, logging.INFO))
        lg.propagate = True
    # The per-video random-backbone warning: the preflight prints one banner per run instead.
    warnings.filterwarnings("ignore", message=r".*RANDOM I3D backbone", category=UserWarning)
    _state["handler"] = handler
    install_signal_handlers()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def install_signal_handlers() -> None:
    """SIGTERM unwinds like Ctrl-C; an uncaught interrupt or user error prints one line.

    Only in the main thread (signal handlers cannot be set elsewhere). Python's default exit
    status for an uncaught ``KeyboardInterrupt`` (killed by SIGINT: 130 in a shell) is kept.
    """
    if _state["signals"] or threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, _raise_interrupt)
    previous: Callable[..., Any] = sys.excepthook

    def hook(t: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if isinstance(exc, KeyboardInterrupt):
            print(INTERRUPTED_MESSAGE, file=sys.stderr)
        elif is_user_error(exc):
            print(f"error: {exc}", file=sys.stderr)
        else:
            previous(t, exc, tb)

    sys.excepthook = hook
    _state["signals"] = True

"""The one error type for bad input videos."""

from __future__ import annotations

import os


class VideoError(ValueError):
    """A video cannot be used; the message names the file and says why.

    ``path`` and ``reason`` are kept as attributes so that callers (e.g. a task that skips
    failed videos and lists them at the end) can report them without parsing the message.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

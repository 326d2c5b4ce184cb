"""Refuse an output root that other users could tamper with, before any work starts.

Workers trust what they find under the output root: Luigi takes an existing output as "done",
and later stages load the features, checkpoints and records earlier ones left there. If any
other user can write the root (or rename it away, through a world-writable parent without the
sticky bit), they can plant results that every worker then builds on. A worker that cannot
write the root would fail only after expensive work. So each process checks its root once,
when its first pipeline task is built (``pipeline.runlog.start_run_log``), and stops with a
message that names the folder and the fix.

The umask is checked too: folders the pipeline creates get ``0o777`` minus the umask, so a
umask without the "others may not write" bit would make every new folder world-writable.
Files written through ``core.atomic`` are never world-writable whatever the umask.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

_checked: set[str] = set()
_umask_lock = threading.Lock()


class OutputRootError(RuntimeError):
    """The output root cannot be used safely; the message says which folder and how to fix it."""


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc/self/status``).

    Elsewhere it is read by setting a strict umask for an instant and restoring it: a file
    another thread creates in that instant gets fewer permissions, never more.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        old = os.umask(0o077)
        os.umask(old)
    return old


def _user() -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(os.geteuid()).pw_name} (uid {os.geteuid()})"
    except (ImportError, KeyError):
        return f"uid {os.geteuid()}" if hasattr(os, "geteuid") else "this user"


def check_output_root(path: str | os.PathLike) -> Path:
    """Create ``path`` if missing and raise :class:`OutputRootError` unless it is safe to use.

    Safe means: a directory this process can write and enter, not writable by every user, no
    parent writable by every user without the sticky bit (``/tmp`` itself is fine, ``/tmp`` as
    the root is not), and a umask that keeps new folders from being world-writable. Returns
    the resolved root. Checked once per process and root; later calls return at once.
    """
    root = Path(path).expanduser().resolve()
    if str(root) in _checked:
        return root
    where = f"output root {root}"
    if root.exists() and not root.is_dir():
        raise OutputRootError(f"{where} is not a directory; give --output-dir a folder")
    umask = current_umask()
    if not umask & stat.S_IWOTH:
        raise OutputRootError(
            f"{where}: the process umask {umask:04o} would make the folders the pipeline creates "
            "writable by every user; start the workers with `umask 027` (group may read) or "
            "`umask 007` (group may also write, for workers running as different users)"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputRootError(
            f"{where} cannot be created ({exc.strerror}); create it as the user that runs the "
            "workers, or give another --output-dir"
        ) from None
    for folder in [root, *root.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IWOTH:
            continue
        if folder == root and mode & stat.S_ISVTX:
            raise OutputRootError(
                f"{where} is a shared folder writable by every user (mode {stat.S_IMODE(mode):04o}, "
                f"like /tmp); give --output-dir a private folder inside it, e.g. {root / 'hamnet-out'}"
            )
        if folder == root:
            raise OutputRootError(
                f"{where} is writable by every user (mode {stat.S_IMODE(mode):04o}): anyone could "
                f"replace outputs that the workers then trust; run `chmod o-w {root}` (and check "
                "its contents), or give a private --output-dir"
            )
        if not mode & stat.S_ISVTX:
            raise OutputRootError(
                f"{where}: its parent {folder} is writable by every user without the sticky bit "
                f"(mode {stat.S_IMODE(mode):04o}), so anyone could rename the output root and put "
                f"their own in its place; run `chmod o-w {folder}` (or `chmod +t`), or put the "
                "output root elsewhere"
            )
    if not os.access(root, os.W_OK | os.X_OK):
        raise OutputRootError(
            f"{where} is not writable by {_user()}; run the workers as its owner, or give the "
            f"workers' group write access (`chgrp GROUP {root} && chmod g+ws {root}`), or give "
            "another --output-dir"
        )
    _checked.add(str(root))
    return root

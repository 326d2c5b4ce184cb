"""The machine's compute-thread budget and scoped thread settings for torch.

Rule (docs/performance.md, "Thread budget"): the pipeline never runs more compute threads than
the budget, because oversubscribed intra-op thread pools collapse (torch's OpenMP threads
spin-wait at every barrier for a thread that the OS has preempted: measured 1.06 -> 19.5 s per
TV-L1 pair at load 3). The budget is the number of cores this process may run on, or
``HAMNET_CPU_THREADS`` when set (for a machine shared with other jobs, give it the share of
cores that is yours). Each stage takes its threads out of it explicitly; nothing relies on a
library's default thread count.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

BUDGET_ENV = "HAMNET_CPU_THREADS"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count`` where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def cpu_budget() -> int:
    """Compute threads the pipeline may run at once: ``$HAMNET_CPU_THREADS`` or the usable cores."""
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if not raw:
        return usable_cores()
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"{BUDGET_ENV}={raw!r} must be a positive integer (compute threads)") from None
    if n < 1:
        raise ValueError(f"{BUDGET_ENV}={raw!r} must be a positive integer (compute threads)")
    return n


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads, restoring the previous count afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)

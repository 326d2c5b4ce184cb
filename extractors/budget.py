"""How feature extraction splits the compute-thread budget (core.threads) between its stages.

During pipelined extraction TV-L1 (a pool of flow workers) and I3D (torch in the calling thread)
run at the same time. Without a plan both took every core (flow workers = cores, torch
intra-op threads = cores): twice the threads the machine has, and torch's spin-waiting threads
then collapse under any extra load. The plan gives each stage its share, in total never more
than the budget:

* I3D on a GPU: the flow workers get the whole budget; the I3D thread mostly waits for the GPU
  and gets one torch thread.
* I3D on the CPU and flow on the CPU (opencv, fused): flow gets ``round(budget · share)``
  workers (at least 1, at most budget - 1), I3D the rest as torch threads. ``share`` is flow's
  part of the CPU time of one snippet (16 flow pairs against I3D RGB + flow on one core:
  measured in docs/performance.md), so that the two stages finish a snippet at about the same
  pace. With a budget of 1 everything runs inline in one thread.
* flow on torch: flow and I3D alternate in the calling thread, so torch gets the whole budget.

I3D keeps the same thread count when flow is read from a cache (see :func:`i3d_threads`).
``extract.flow_workers > 0`` sets the flow workers by hand (the user's choice may exceed the
budget; I3D's threads do not change). Decoding is one light extra thread (a few percent of a
core) and is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.threads import cpu_budget
from extractors.settings import ExtractSettings

# Flow's share of one snippet's CPU time when I3D also runs on the CPU (16 TV-L1 pairs against
# I3D RGB + flow, one core each; docs/performance.md, "Thread budget").
FLOW_SHARE = {"opencv": 0.9, "fused": 0.65}


@dataclass(frozen=True)
class ThreadPlan:
    flow_workers: int  # OpenCV processes / fused threads (1 = inline unless background)
    background: bool  # flow in a pool, overlapped with I3D in the calling thread
    i3d_threads: int  # torch intra-op threads for I3D (and for the torch flow backend)

    @property
    def compute_threads(self) -> int:
        """Compute threads running at once under this plan."""
        flow = self.flow_workers if self.background else 0
        return flow + self.i3d_threads


def i3d_threads(settings: ExtractSettings, i3d_device: str, budget: int) -> int:
    """I3D's torch threads: a function of backend, device and budget only, never of
    ``flow_workers`` or of whether flow comes from a cache, because torch's CPU convolutions
    round differently with another thread count (~1e-7 relative) and features must not depend
    on how the flow was obtained (tested bit for bit)."""
    if i3d_device.startswith("cuda"):
        return 1  # the calling thread only feeds the GPU
    if settings.flow_backend == "torch" or budget == 1:
        return budget  # flow and I3D alternate in the calling thread
    share = FLOW_SHARE.get(settings.flow_backend, 0.9)
    return budget - min(budget - 1, max(1, round(budget * share)))


def plan_extraction(
    settings: ExtractSettings, i3d_device: str, *, flow_cached: bool = False, budget: int | None = None
) -> ThreadPlan:
    """The thread split for extracting one video's features (see the module docstring)."""
    b = cpu_budget() if budget is None else max(1, int(budget))
    threads = i3d_threads(settings, i3d_device, b)
    if flow_cached or settings.flow_backend == "torch":
        return ThreadPlan(flow_workers=1, background=False, i3d_threads=threads)
    if i3d_device.startswith("cuda"):
        workers = settings.flow_workers or b
        return ThreadPlan(flow_workers=workers, background=workers > 1, i3d_threads=threads)
    if b == 1:
        return ThreadPlan(
            flow_workers=settings.flow_workers or 1, background=bool(settings.flow_workers > 1), i3d_threads=1
        )
    workers = settings.flow_workers or (b - threads)
    return ThreadPlan(flow_workers=workers, background=True, i3d_threads=threads)

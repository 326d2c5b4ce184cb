"""TV-L1 optical flow and its 8-bit quantisation.

Conventions (docs/extraction.md): flow is computed on grey frames of the centre crop, from
frame i to frame i+1 (OpenCV ``calc(prev, next)``: channel 0 = x, channel 1 = y, pixels),
clipped to +-``flow_bound`` and mapped linearly to 0..255. The quantised flow is what is
cached and what the flow network sees (as ``q / 127.5 - 1``), so cached and freshly computed
flow give identical features.

OpenCV's TV-L1 is single-pair and CPU-only; its internal threading scales poorly, so pairs are
spread over worker processes, each running OpenCV single-threaded. The workers are spawned,
not forked: once the parent has used OpenCV's (or torch's) thread pool, a forked child
deadlocks on the pool's copied locks (observed: ``cv2.setNumThreads`` hanging in the child).
As always with ``spawn``, a script that starts extraction must do so under
``if __name__ == "__main__":``.

The ``fused`` backend (extractors/tvl1_fused.py) is the same algorithm with a numba kernel; it
releases the GIL, so its parallelism is a pool of threads in this process (no spawn, no copies).
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import numpy as np

from core.device import resolve_device
from extractors.settings import ExtractSettings, TVL1Params


def quantize_flow(flow: np.ndarray, bound: float) -> np.ndarray:
    """float flow (px) -> uint8: clip to [-bound, bound], map linearly onto 0..255, round."""
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2.0 * bound))
    return np.rint(scaled).astype(np.uint8)


def dequantize_flow(q: np.ndarray, bound: float) -> np.ndarray:
    """uint8 -> float32 px; inverse of :func:`quantize_flow` within bound/255 px (half a step)."""
    return q.astype(np.float32) * np.float32(2.0 * bound / 255.0) - np.float32(bound)


def _create_tvl1(p: TVL1Params):
    import cv2

    # OpenCV's generated stubs (opencv-contrib 5.0) declare the class but omit this factory function.
    return cv2.optflow.DualTVL1OpticalFlow_create(  # type: ignore[attr-defined]
        tau=p.tau,
        lambda_=p.lambda_,
        theta=p.theta,
        nscales=int(p.nscales),
        warps=int(p.warps),
        epsilon=p.epsilon,
        innnerIterations=int(p.inner_iterations),  # (sic) OpenCV's keyword spelling
        outerIterations=int(p.outer_iterations),
        scaleStep=p.scale_step,
        gamma=p.gamma,
        medianFiltering=int(p.median_filtering),
    )


_TVL1_CACHE: dict[TVL1Params, Any] = {}


def tvl1_pairs(gray: np.ndarray, params: TVL1Params) -> np.ndarray:
    """float32 flow [n-1, H, W, 2] between consecutive grey frames [n, H, W], in this process."""
    algo = _TVL1_CACHE.get(params)
    if algo is None:
        algo = _TVL1_CACHE[params] = _create_tvl1(params)
    n, h, w = gray.shape
    out = np.empty((max(n - 1, 0), h, w, 2), np.float32)
    for i in range(n - 1):
        out[i] = algo.calc(gray[i], gray[i + 1], None)
    return out


def _job(gray: np.ndarray, params: TVL1Params, bound: float) -> np.ndarray:
    return quantize_flow(tvl1_pairs(gray, params), bound)


def _fused_job(gray: np.ndarray, params: TVL1Params, bound: float) -> np.ndarray:
    from extractors.tvl1_fused import tvl1_fused_batch

    return quantize_flow(tvl1_fused_batch(gray[:-1], gray[1:], params), bound)


def _worker_init() -> None:
    import signal

    import cv2

    cv2.setNumThreads(1)  # one process per core does the parallelism
    # Ctrl-C reaches the whole process group: the parent stops the pool (FlowRunner.close),
    # so a worker must not die mid-write and print its own KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Done(Future):
    def __init__(self, value: Any):
        super().__init__()
        self.set_result(value)


class FlowRunner:
    """Computes quantised flow for runs of consecutive grey frames, possibly in parallel.

    ``submit(gray[n, H, W]) -> Future[uint8[n-1, H, W, 2]]``. With the OpenCV backend and more
    than one worker the job goes to a process pool and the future completes later; otherwise
    the job runs at once in this process (the future is already done). With the fused backend
    and more than one worker the jobs go to a thread pool (one pair after another per thread).
    Use as a context manager so that the pool is shut down.
    """

    def __init__(self, settings: ExtractSettings, workers: int | None = None, *, background: bool = False):
        """``workers``: processes (opencv) or threads (fused), default ``settings.num_flow_workers``;
        ``background``: use a pool even for one worker, so that flow overlaps the caller's work
        (extractors.budget gives I3D the other cores)."""
        self.settings = settings
        self.workers = settings.num_flow_workers if workers is None else max(1, int(workers))
        pooled = self.workers > 1 or background
        self._pool: Executor | None = None
        self._device: str | None = None
        if settings.flow_backend == "fused":
            from extractors.tvl1_fused import warm_up

            warm_up()  # a missing numba or the compilation shows up here, before any decoding
        if settings.flow_backend == "opencv" and pooled:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=mp.get_context("spawn"), initializer=_worker_init
            )
        elif settings.flow_backend == "fused" and pooled:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="tvl1-fused")

    @property
    def parallel(self) -> bool:
        return self._pool is not None

    def submit(self, gray: np.ndarray) -> Future:
        s = self.settings
        if gray.shape[0] < 2:
            return _Done(np.empty((0, *gray.shape[1:], 2), np.uint8))
        if s.flow_backend == "torch":
            return _Done(self._torch_flow(gray))
        job = _fused_job if s.flow_backend == "fused" else _job
        if self._pool is not None:
            return self._pool.submit(job, np.ascontiguousarray(gray), s.tvl1, s.flow_bound)
        return _Done(job(gray, s.tvl1, s.flow_bound))

    def _torch_flow(self, gray: np.ndarray) -> np.ndarray:
        from extractors.tvl1_torch import tvl1_flow_batch  # optional backend, imported on use

        if self._device is None:
            self._device = resolve_device(self.settings.device)
        flow = tvl1_flow_batch(gray[:-1], gray[1:], self.settings.tvl1, device=self._device)
        flow = np.asarray(flow, dtype=np.float32)
        return quantize_flow(flow, self.settings.flow_bound)

    def close(self, abort: bool = False) -> None:
        """Shut the pool down; ``abort`` (an exception or a signal is unwinding) kills the workers.

        Waiting for running TV-L1 jobs could take many seconds and, when the parent is going
        away, leave workers blocked on a result pipe nobody reads, so they are terminated.
        """
        if self._pool is not None:
            pool, self._pool = self._pool, None
            if abort:
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.terminate()
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> FlowRunner:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close(abort=exc_type is not None)


def compute_flow(gray_frames: np.ndarray, settings: ExtractSettings, *, progress: bool = False) -> np.ndarray:
    """Quantised TV-L1 flow between consecutive frames: uint8 [N, H, W] -> uint8 [N-1, H, W, 2].

    Dispatches on ``settings.flow_backend``; with OpenCV (fused) the pairs are split into
    contiguous runs over ``settings.flow_workers`` processes (threads), 0 = one per core.
    """
    gray_frames = np.asarray(gray_frames)
    if gray_frames.ndim != 3 or gray_frames.dtype != np.uint8:
        raise ValueError(f"gray_frames must be uint8 [N, H, W], got {gray_frames.dtype} {gray_frames.shape}")
    n = gray_frames.shape[0]
    if n < 2:
        return np.empty((0, *gray_frames.shape[1:], 2), np.uint8)
    with FlowRunner(settings) as runner:
        # Runs of consecutive frames overlap by one frame so that every pair is computed once.
        n_jobs = min(n - 1, runner.workers * 4) if runner.parallel else 1
        bounds = np.linspace(0, n - 1, n_jobs + 1).round().astype(int)
        futures = [runner.submit(gray_frames[a : b + 1]) for a, b in zip(bounds[:-1], bounds[1:])]
        parts = []
        from tqdm import tqdm

        for fut in tqdm(futures, desc="TV-L1", unit="job", disable=None if progress else True):
            parts.append(fut.result())
    return np.concatenate(parts, axis=0)

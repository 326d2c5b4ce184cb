"""Per-video feature extraction, streamed and pipelined.

Stages and where they run:

1. decode + resample to 25 fps + resize/crop -- a background thread (PyAV and OpenCV release
   the GIL), handing over groups of ``frames_per_snippet`` cropped frames through a bounded
   queue;
2. TV-L1 flow -- a pool of flow workers (extractors.flow.FlowRunner: processes for OpenCV,
   threads for the fused backend), one job per snippet (its 16 pairs, which needs the first
   frame of the next snippet), several jobs in flight;
3. I3D RGB and flow -- the calling thread, in batches of ``batch_size`` snippets, consuming
   snippets in order as soon as their flow is done.

The worker count and I3D's torch threads come from extractors.budget.plan_extraction, which
keeps their sum within the machine's compute-thread budget (core.threads).

So the stages overlap and a video's wall time approaches that of its slowest stage (flow, on
CPU) instead of the sum. Memory is bounded by the queue and the number of jobs in flight
(a few dozen cropped frames), whatever the video's length: full-resolution frames are never
accumulated. With ``flow_workers = 1`` (or the torch backend) flow runs inline instead: the
same streaming, just not overlapped with I3D.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from core.device import resolve_device
from core.threads import torch_threads
from extractors.budget import plan_extraction
from extractors.decode import DecodeStats, iter_frames, open_video
from extractors.errors import VideoError
from extractors.flow import FlowRunner
from extractors.settings import ExtractSettings
from extractors.snippets import num_snippets, pad_to
from extractors.transforms import resize_crop, rgb_to_gray, uint8_to_unit

log = logging.getLogger(__name__)


class ArrayLike(Protocol):  # e.g. an h5py Dataset of cached flow
    shape: tuple[int, ...]

    def __getitem__(self, idx: Any) -> np.ndarray: ...


@dataclass
class Snippet:
    """One snippet before padding: ``rgb`` [n <= 16, c, c, 3] and ``flow`` [m, c, c, 2] uint8,
    m = n for all but the last snippet (m = n - 1 there: no pair after the last frame)."""

    index: int
    rgb: np.ndarray
    flow: np.ndarray


@dataclass
class VideoFeatureResult:
    rgb: np.ndarray  # [T, 1024] float32
    flow: np.ndarray  # [T, 1024] float32
    stats: DecodeStats
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_snippets(self) -> int:
        return int(self.rgb.shape[0])


_END = object()


def _decode_groups(video_path, settings: ExtractSettings, stats: DecodeStats, out: queue.Queue, stop: threading.Event):
    """Producer thread body: put lists of frames_per_snippet cropped frames, then _END."""
    k = settings.frames_per_snippet

    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    try:
        group: list[np.ndarray] = []
        crop = lambda f: resize_crop(f, settings.resize_short, settings.crop)  # noqa: E731
        for frame in iter_frames(video_path, settings.fps, crop, stats):
            group.append(frame)
            if len(group) == k:
                if not put(group):
                    return
                group = []
        if group and not put(group):
            return
        put(_END)
    except BaseException as e:  # handed to the consumer, which re-raises it
        put(e)


def iter_snippets(
    video_path: str | os.PathLike,
    settings: ExtractSettings,
    *,
    stats: DecodeStats | None = None,
    cached_flow: ArrayLike | None = None,
    runner: FlowRunner | None = None,
    max_jobs: int | None = None,
) -> Iterator[Snippet]:
    """Yield the video's snippets in order with their (unpadded) RGB frames and quantised flow.

    ``cached_flow`` ([N-1, c, c, 2] uint8, e.g. an h5py dataset) replaces flow computation;
    its length is checked against the decoded frame count at the end. ``runner`` lets a
    caller reuse one process pool across videos. ``stats`` receives the decoding facts.
    """
    st = stats if stats is not None else DecodeStats()
    k = settings.frames_per_snippet
    groups: queue.Queue = queue.Queue(maxsize=4)
    stop = threading.Event()
    producer = threading.Thread(
        target=_decode_groups, args=(video_path, settings, st, groups, stop), name="decode", daemon=True
    )
    own_runner = runner is None and cached_flow is None
    if own_runner:
        runner = FlowRunner(settings)
    in_flight = max_jobs or (2 * runner.workers + 2 if runner is not None else 1)
    pending: deque[tuple[int, list[np.ndarray], Any]] = deque()  # (index, frames, future|array)
    aborted = False
    producer.start()

    def next_group():
        item = groups.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def flow_for(idx: int, frames: list[np.ndarray], lookahead: np.ndarray | None):
        if cached_flow is not None:
            a = idx * k
            b = a + len(frames) - (lookahead is None)
            if b > cached_flow.shape[0]:
                raise VideoError(
                    video_path, f"flow cache has {cached_flow.shape[0]} fields but the video has more frames"
                )
            return np.asarray(cached_flow[a:b])
        seq = frames + ([lookahead] if lookahead is not None else [])
        assert runner is not None  # created above whenever there is no cached_flow
        return runner.submit(rgb_to_gray(np.stack(seq)))

    def finished(entry) -> Snippet:
        idx, frames, fut = entry
        flow = fut.result() if hasattr(fut, "result") else fut
        return Snippet(idx, np.stack(frames), flow)

    try:
        idx = 0
        prev = next_group()
        if prev is _END:
            raise VideoError(video_path, "no decodable video frames")
        while True:
            cur = next_group()
            last = cur is _END
            pending.append((idx, prev, flow_for(idx, prev, None if last else cur[0])))
            idx += 1
            # Hand over every finished snippet at the head; block only when too much is queued.
            while pending and (len(pending) > in_flight or _done(pending[0][2])):
                yield finished(pending.popleft())
            if last:
                break
            prev = cur
        while pending:
            yield finished(pending.popleft())
        n = st.n_frames
        if n < 2:
            raise VideoError(
                video_path, f"too short: {n} frame(s) at {settings.fps:g} fps, need at least 2 for optical flow"
            )
        if cached_flow is not None and cached_flow.shape[0] != n - 1:
            raise VideoError(
                video_path,
                f"flow cache has {cached_flow.shape[0]} fields, but the video decodes to {n} frames (expected {n - 1})",
            )
    except BaseException:  # includes GeneratorExit and KeyboardInterrupt (Ctrl-C, SIGTERM)
        aborted = True
        raise
    finally:
        stop.set()
        producer.join(timeout=10)
        if own_runner and runner is not None:
            runner.close(abort=aborted)


def _done(x: Any) -> bool:
    return not hasattr(x, "done") or x.done()


def iter_padded_snippets(
    snippets: Iterator[Snippet], frames_per_snippet: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Apply the padding rule (extractors.snippets): yield (rgb [16,c,c,3], flow [16,c,c,2])."""
    last_field: np.ndarray | None = None
    for s in snippets:
        if s.flow.shape[0]:
            last_field = s.flow[-1]
        rgb = pad_to(s.rgb, frames_per_snippet)
        flow = pad_to(s.flow, frames_per_snippet, fill=last_field) if last_field is not None else None
        if flow is None:  # a 1-frame video: no field to repeat; caught as "too short" later
            continue
        yield rgb, flow


class I3DRunner:
    """Batched I3D inference for one stream on the chosen device and precision."""

    def __init__(self, model, device: str = "cpu", precision: str = "fp32"):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        """uint8 [B, T, H, W, C] -> float32 [B, 1024]."""
        torch = self.torch
        x = torch.from_numpy(uint8_to_unit(np.ascontiguousarray(clips))).permute(0, 4, 1, 2, 3)
        x = x.to(self.device, non_blocking=True)
        with torch.inference_mode():
            ctx = (
                torch.autocast(self.device.type, dtype=self.dtype)
                if self.dtype is not None
                else contextlib.nullcontext()
            )
            with ctx:
                f = self.model.features(x)
        return f.float().cpu().numpy()


def extract_video_features(
    video_path: str | os.PathLike,
    settings: ExtractSettings,
    *,
    models: tuple[Any, Any] | None = None,
    cached_flow: ArrayLike | None = None,
    runner: FlowRunner | None = None,
    progress: bool = True,
    i3d_threads: int | None = None,
) -> VideoFeatureResult:
    """RGB and flow I3D features [T, 1024] of one video, streamed and pipelined.

    ``models`` = (rgb I3D, flow I3D); built from ``settings`` (checkpoints or the seeded random
    backbone) when omitted. Raises VideoError for unusable videos.

    Threads follow extractors.budget.plan_extraction (flow workers + I3D torch threads <= the
    compute budget); a caller-provided ``runner`` keeps its workers; ``i3d_threads`` overrides
    the plan's torch threads (benchmarks).
    """
    import time

    from tqdm import tqdm

    from extractors.checkpoints import cached_backbones

    t_start = time.perf_counter()
    container, _ = open_video(video_path)  # fail fast on unusable input, before loading weights
    container.close()
    rgb_model, flow_model = models if models is not None else cached_backbones(settings)
    device = resolve_device(settings.device)
    plan = plan_extraction(settings, device, flow_cached=cached_flow is not None)
    own_runner = runner is None and cached_flow is None
    n_threads = plan.i3d_threads if i3d_threads is None else i3d_threads
    run_rgb = I3DRunner(rgb_model, device, settings.precision)
    run_flow = I3DRunner(flow_model, device, settings.precision)
    st = DecodeStats()
    k, bs = settings.frames_per_snippet, settings.batch_size
    rgb_feats: list[np.ndarray] = []
    flow_feats: list[np.ndarray] = []
    rgb_buf: list[np.ndarray] = []
    flow_buf: list[np.ndarray] = []
    t_i3d = 0.0

    def flush():
        nonlocal t_i3d
        t0 = time.perf_counter()
        rgb_feats.append(run_rgb(np.stack(rgb_buf)))
        flow_feats.append(run_flow(np.stack(flow_buf)))
        t_i3d += time.perf_counter() - t0
        rgb_buf.clear()
        flow_buf.clear()

    est = _estimate_snippets(video_path, settings)
    bar = tqdm(
        total=est,
        desc=f"features {os.path.basename(str(video_path))}",
        unit="snippet",
        disable=None if progress else True,
        leave=False,
    )
    try:
        if own_runner:
            runner = FlowRunner(settings, workers=plan.flow_workers, background=plan.background)
        with torch_threads(n_threads):
            snippets = iter_snippets(video_path, settings, stats=st, cached_flow=cached_flow, runner=runner)
            for rgb, flow in iter_padded_snippets(snippets, k):
                rgb_buf.append(rgb)
                flow_buf.append(flow)
                if len(rgb_buf) == bs:
                    flush()
                bar.update(1)
            if rgb_buf:
                flush()
    finally:
        bar.close()
        if own_runner and runner is not None:
            runner.close()
    rgb_out = np.concatenate(rgb_feats).astype(np.float32)
    flow_out = np.concatenate(flow_feats).astype(np.float32)
    expected = num_snippets(st.n_frames, k)
    if rgb_out.shape[0] != expected or flow_out.shape[0] != expected:
        raise RuntimeError(f"{video_path}: produced {rgb_out.shape[0]} snippets, expected {expected}")
    if not (np.isfinite(rgb_out).all() and np.isfinite(flow_out).all()):
        raise RuntimeError(f"{video_path}: I3D produced NaN/inf features (precision {settings.precision})")
    timings = {"wall_s": time.perf_counter() - t_start, "i3d_s": t_i3d, "i3d_threads": float(n_threads)}
    if runner is not None:
        timings["flow_workers"] = float(runner.workers)
    return VideoFeatureResult(rgb_out, flow_out, st, timings)


def _estimate_snippets(video_path, settings: ExtractSettings) -> int | None:
    """Snippet count from container metadata, for the progress bar only (may be off by one)."""
    try:
        import av

        with av.open(str(video_path)) as c:
            s = c.streams.video[0]
            dur = float(s.duration * s.time_base) if s.duration else (c.duration or 0) / 1e6
        return num_snippets(int(np.ceil(dur * settings.fps)), settings.frames_per_snippet) or None
    except Exception:
        return None

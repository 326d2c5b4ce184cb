"""Decoding with PyAV and resampling to a constant frame rate by presentation timestamps.

Resampling rule (the one a constant-rate resampler such as ffmpeg's ``fps`` filter with
``round=down`` applies): let source frame j have timestamp p_j (seconds, relative to the first
decoded frame, so p_0 = 0) and let the video end at E = p_last + d_last (d_last = the last
frame's own duration, else the last frame interval, else 1 / average rate). Output frame i
exists for every i with i / fps < E, i.e. N = ceil(E * fps) frames, and shows the latest
source frame with p_j <= i / fps. Source frames are therefore duplicated (source slower than
``fps``) or dropped (faster) by timestamp, which is safe for variable-frame-rate files.
Arithmetic is exact (fractions of the stream time base), so a 30 fps clip of 300 frames gives
exactly 250 frames, never 249 or 251 from rounding.

The recorded duration is E. Rotation metadata (the display matrix) is honoured: frames are
turned the way a player shows them. Decoding errors inside the stream (a damaged packet) are
skipped and counted -- the resampler then repeats the previous good frame over the gap, so
timing is preserved; a file with no decodable video frame at all is a :class:`VideoError`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from extractors.errors import VideoError
from extractors.transforms import apply_rotation

log = logging.getLogger(__name__)

# More damaged packets than this (absolute, and as a share of packets) means the file is
# garbage rather than a video with a glitch; we stop instead of emitting frozen frames.
MAX_DECODE_ERRORS = 200
MAX_DECODE_ERROR_SHARE = 0.5

# Frame threading ("AUTO") swallows a damaged last packet and drops the frames it still held
# (a truncated faststart MP4 claiming 150 frames: 71 frames, where slice threading decodes 73
# and reports the damaged packet). Slice threading cost +42% on the decode figure here
# (bench/bench_decode_threads.py: decode + resample + crop of demo.mp4, 2 cores), far over
# the 10% budget, so AUTO stays; the claimed-vs-decoded check below makes the loss visible.
THREAD_TYPE = "AUTO"
# A container claiming more frames than this many beyond those decoded gets a warning.
CLAIM_TOLERANCE_FRAMES = 1


@dataclass
class DecodeStats:
    """What decoding found out; filled in while frames are produced, complete at the end."""

    path: str = ""
    codec: str = ""
    width: int = 0  # displayed size (after rotation)
    height: int = 0
    rotation: int = 0
    source_fps: float = 0.0  # the stream's average rate as declared by the container
    n_source_frames: int = 0  # frames decoded (with usable timestamps)
    n_frames: int = 0  # frames emitted at the target rate
    duration: float = 0.0  # seconds, E in the module docstring
    decode_errors: int = 0
    dropped_non_monotonic: int = 0
    corrupt_frames: int = 0
    warnings: list[str] = field(default_factory=list)
    finished: bool = False

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "warnings"} | {"warnings": list(self.warnings)}


def open_video(path: str | os.PathLike) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open a file and return (container, first video stream), or raise VideoError."""
    p = Path(path)
    if not p.exists():
        raise VideoError(p, "no such file")
    if not p.is_file():
        raise VideoError(p, "not a regular file")
    if p.stat().st_size == 0:
        raise VideoError(p, "empty file (0 bytes)")
    try:
        container = av.open(str(p), mode="r")
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise VideoError(p, f"not a readable video file ({type(e).__name__}: {e})") from e
    if not container.streams.video:
        kinds: list[str] = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise VideoError(p, f"no video stream (streams present: {', '.join(kinds)})")
    return container, container.streams.video[0]


def _seconds(value: int | None, time_base: Fraction | None) -> Fraction | None:
    if value is None or time_base is None:
        return None
    return Fraction(value) * Fraction(time_base)


class _BestEffortTimestamp:
    """FFmpeg's ``guess_correct_pts``: prefer pts unless pts have been faultier than dts.

    Needed for e.g. AVI with B-frames, where frames leave the decoder in display order but
    carry the packets' (decode-order) pts; their dts are the right display times.
    """

    def __init__(self) -> None:
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts: int | None = None
        self.last_dts: int | None = None

    def pick(self, pts: int | None, dts: int | None) -> int | None:
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None):
            return pts
        return dts


def _timestamped(frames: Iterator[av.VideoFrame], lookahead: int = 16) -> Iterator[tuple[av.VideoFrame, int | None]]:
    """Pair frames with best-effort timestamps, deciding the first ``lookahead`` frames with
    hindsight: the per-frame rule only notices faulty pts after the first reordered frame,
    which would misplace that frame; judging the opening frames together avoids it."""
    best = _BestEffortTimestamp()
    head: list[av.VideoFrame] = []
    for frame in frames:
        if len(head) < lookahead:
            head.append(frame)
            best.pick(frame.pts, frame.dts)
            continue
        if head:
            use_pts = best.faulty_pts <= best.faulty_dts
            for f in head:
                yield f, (f.pts if (use_pts and f.pts is not None) or f.dts is None else f.dts)
            head = []
        yield frame, best.pick(frame.pts, frame.dts)
    use_pts = best.faulty_pts <= best.faulty_dts
    for f in head:
        yield f, (f.pts if (use_pts and f.pts is not None) or f.dts is None else f.dts)


def iter_frames(
    path: str | os.PathLike,
    fps: float = 25.0,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    stats: DecodeStats | None = None,
) -> Iterator[np.ndarray]:
    """Yield frames resampled to ``fps`` (RGB uint8 H x W x 3, rotated, then ``transform``-ed).

    ``transform`` runs once per *source* frame that is shown at least once (dropped frames
    are never converted), and a duplicated frame is yielded as the same array object: treat
    yielded arrays as read-only. ``stats`` (optional) is filled in as decoding proceeds and is
    complete when the iterator is exhausted.
    """
    st = stats if stats is not None else DecodeStats()
    st.path = str(path)
    rate = Fraction(fps).limit_denominator(1_000_000)
    container, stream = open_video(path)
    try:
        stream.codec_context.thread_type = THREAD_TYPE
        st.codec = stream.codec_context.name
        avg = stream.average_rate or stream.guessed_rate
        st.source_fps = float(avg) if avg else 0.0
        tb = stream.time_base
        nominal = Fraction(1) / Fraction(avg) if avg else Fraction(1, 25)

        t0: Fraction | None = None
        cur_t: Fraction | None = None  # relative timestamp of the held source frame
        cur_frame: av.VideoFrame | None = None
        cur_rgb: np.ndarray | None = None
        cur_dur: Fraction | None = None
        last_interval: Fraction | None = None
        next_i = 0
        n_packets = 0

        def convert(frame: av.VideoFrame) -> np.ndarray:
            rgb = frame.to_ndarray(format="rgb24")
            rot = frame.rotation or 0
            if rot:
                rgb = apply_rotation(rgb, rot)
            st.rotation = int(rot)
            st.height, st.width = rgb.shape[:2]
            return transform(rgb) if transform is not None else rgb

        def packets():
            nonlocal n_packets
            for packet in container.demux(stream):
                n_packets += 1
                try:
                    yield from packet.decode()
                except (av.error.FFmpegError, ValueError) as e:
                    st.decode_errors += 1
                    if st.decode_errors == 1:
                        msg = f"{path}: damaged data skipped near packet {n_packets} ({e})"
                        log.warning(msg)
                        st.warnings.append(msg)
                    if st.decode_errors > MAX_DECODE_ERRORS and st.decode_errors > MAX_DECODE_ERROR_SHARE * n_packets:
                        raise VideoError(
                            path, f"too many decoding errors ({st.decode_errors} of {n_packets} packets)"
                        ) from e

        try:
            for frame, ts in _timestamped(packets()):
                t_abs = _seconds(ts, frame.time_base or tb)
                if t_abs is None:  # no timestamp at all: assume the nominal rate
                    t_abs = (cur_t + nominal + (t0 or 0)) if cur_t is not None else Fraction(0)
                if t0 is None:
                    t0 = t_abs
                t = t_abs - t0
                if cur_t is not None and t <= cur_t:
                    # Out-of-order or repeated timestamp (broken muxing): keeping it would
                    # move time backwards; the earlier frame already covers this instant.
                    st.dropped_non_monotonic += 1
                    continue
                if frame.is_corrupt:
                    st.corrupt_frames += 1
                if cur_frame is not None:
                    assert cur_t is not None  # set together with cur_frame
                    last_interval = t - cur_t
                    while Fraction(next_i) / rate < t:
                        if cur_rgb is None:
                            cur_rgb = convert(cur_frame)
                        yield cur_rgb
                        next_i += 1
                        st.n_frames = next_i
                cur_frame, cur_rgb, cur_t = frame, None, t
                d = _seconds(frame.duration, frame.time_base or tb) if frame.duration else None
                cur_dur = d if d and d > 0 else None
                st.n_source_frames += 1
        except av.error.FFmpegError as e:  # demuxer gave up (e.g. truncated file): keep what we have
            st.decode_errors += 1
            msg = f"{path}: stream ended early ({e}); using the {st.n_source_frames} frames decoded so far"
            log.warning(msg)
            st.warnings.append(msg)

        if cur_frame is None:
            raise VideoError(path, "no decodable video frames")
        assert cur_t is not None  # set together with cur_frame
        end = cur_t + (cur_dur or last_interval or nominal)
        while Fraction(next_i) / rate < end:
            if cur_rgb is None:
                cur_rgb = convert(cur_frame)
            yield cur_rgb
            next_i += 1
            st.n_frames = next_i
        st.duration = float(end)
        _check_claim(path, stream, st, t0 or Fraction(0))
        st.finished = True
    finally:
        container.close()


def _check_claim(path: str | os.PathLike, stream: Any, st: DecodeStats, t0: Fraction) -> None:
    """Warn (log and ``st.warnings``) when the container claims more frames than were decoded.

    The message names the file, the frames decoded vs claimed and the time range lost (the
    claimed end minus what decoded), so a damaged file never passes silently.
    """
    claimed = int(stream.frames or 0)
    if claimed <= st.n_source_frames + CLAIM_TOLERANCE_FRAMES:
        return
    claimed_end = None
    if stream.duration and stream.time_base:
        claimed_end = float(Fraction(stream.duration) * Fraction(stream.time_base))
        if stream.start_time is not None:
            claimed_end += float(Fraction(stream.start_time) * Fraction(stream.time_base)) - float(t0)
    lost = f"; lost {st.duration:.2f}-{claimed_end:.2f} s" if claimed_end and claimed_end > st.duration else ""
    msg = f"{path}: decoded {st.n_source_frames} of the {claimed} frames the container claims{lost} (damaged or truncated file)"
    log.warning(msg)
    st.warnings.append(msg)


def decode_video(
    path: str | os.PathLike,
    fps: float = 25.0,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, DecodeStats]:
    """All resampled frames as one array (N x H x W x 3). Only for short clips and tests:
    the extractor streams instead (see extractors.video_features)."""
    st = DecodeStats()
    frames = [f for f in iter_frames(path, fps, transform, st)]
    return np.stack(frames), st

"""A synthetic demo dataset: small untrimmed videos with exact temporal ground truth.

The default run of the pipeline uses it, so a new machine needs no data. Each video shows a
textured background that pans (so there is motion everywhere, not only during actions) and,
at random times covering a minority of the video, one of a few "actions": objects that
differ both in appearance (colour, shape) and in motion (rotation, vertical bounce,
horizontal slide, pulsing). Video labels and the ActivityNet-form ground truth are exact by
construction.

The dataset is split in two: ``train`` videos are listed in the labels CSV (weak labels
only, what HAM-Net trains on) and ``test`` videos are listed in the ground truth (what the
localizations are evaluated on). Everything is drawn from one seeded generator, so the same
spec gives byte-identical videos and annotations.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from tqdm import tqdm

from core.atomic import atomic_path, write_json_atomic
from storage.labels import write_labels_csv

DEMO_CLASSES = ("spin", "bounce", "slide", "pulse")

# Colours (RGB) chosen far apart so that even an untrained backbone separates the classes.
_COLOURS = {
    "spin": (230, 40, 40),
    "bounce": (40, 210, 60),
    "slide": (50, 80, 235),
    "pulse": (240, 220, 40),
}


@dataclass(frozen=True)
class DemoSpec:
    """What to synthesise. Defaults give a dataset the default run handles in minutes on 2 cores."""

    # Many short videos rather than a few long ones: weak supervision learns from the contrast
    # between videos, and TV-L1 cost depends only on the total number of frames.
    num_train: int = 28
    num_test: int = 8
    num_classes: int = 4
    min_seconds: float = 6.5
    max_seconds: float = 8.5
    min_action_seconds: float = 1.6
    max_action_seconds: float = 2.9
    max_instances: int = 1
    max_action_fraction: float = 0.45  # actions cover at most this share of a video
    width: int = 64
    height: int = 48
    fps: float = 25.0
    object_scale: float = 1.25  # action object size and motion amplitude (1 = designed for 64-px-high frames)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.num_classes <= len(DEMO_CLASSES):
            raise ValueError(f"num_classes must be 1..{len(DEMO_CLASSES)}, got {self.num_classes}")
        if self.width % 2 or self.height % 2:
            raise ValueError(f"width and height must be even (H.264 4:2:0), got {self.width}x{self.height}")
        if self.object_scale <= 0:
            raise ValueError(f"object_scale must be > 0, got {self.object_scale}")
        if self.min_seconds > self.max_seconds or self.min_action_seconds > self.max_action_seconds:
            raise ValueError("min durations must not exceed max durations")
        if self.max_action_seconds * self.max_instances > self.max_action_fraction * self.min_seconds + 1e-9:
            raise ValueError(
                "actions could cover more than max_action_fraction of the shortest video; "
                "lower max_instances/max_action_seconds or raise min_seconds"
            )

    @property
    def classes(self) -> list[str]:
        return list(DEMO_CLASSES[: self.num_classes])


@dataclass
class DemoVideo:
    """The plan of one synthetic video (what is drawn where and when)."""

    video_id: str
    subset: str  # "train" | "test"
    duration: float  # seconds
    segments: list[tuple[float, float, str]]  # (start s, end s, label)
    background_seed: int

    @property
    def labels(self) -> list[str]:
        return sorted({s[2] for s in self.segments})


def plan_demo(spec: DemoSpec) -> list[DemoVideo]:
    """Draw durations, action classes and times for every video (no pixels yet)."""
    rng = np.random.default_rng(spec.seed)
    classes = spec.classes
    videos: list[DemoVideo] = []
    total = spec.num_train + spec.num_test
    for i in range(total):
        subset = "train" if i < spec.num_train else "test"
        # Frame-exact durations so that ground truth and decoded length agree.
        n_frames = int(round(rng.uniform(spec.min_seconds, spec.max_seconds) * spec.fps))
        duration = n_frames / spec.fps
        # Cycle classes so every class occurs in both subsets; a second class sometimes joins.
        main = classes[i % len(classes)]
        n_inst = int(rng.integers(1, spec.max_instances + 1))
        labels = [main] * n_inst
        if n_inst > 1 and len(classes) > 1 and rng.random() < 0.3:
            labels[-1] = classes[(i + 1 + int(rng.integers(0, len(classes) - 1))) % len(classes)]
        lengths = [float(rng.uniform(spec.min_action_seconds, spec.max_action_seconds)) for _ in labels]
        segments = _place(rng, duration, lengths, labels, spec.fps)
        videos.append(DemoVideo(f"demo_{i:03d}", subset, duration, segments, int(rng.integers(0, 2**31 - 1))))
    return videos


def _place(
    rng: np.random.Generator, duration: float, lengths: list[float], labels: list[str], fps: float
) -> list[tuple[float, float, str]]:
    """Place non-overlapping segments at random, with background gaps of at least 1 s between."""
    gap = 1.0
    free = duration - sum(lengths) - gap * (len(lengths) + 1)
    if free < 0:
        raise ValueError(f"video of {duration:.1f}s too short for actions {lengths}")
    # Random split of the free time into len+1 gaps (sorted uniform cut points).
    cuts = np.sort(rng.uniform(0, free, size=len(lengths)))
    extra = np.diff(np.concatenate([[0.0], cuts]))
    order = rng.permutation(len(lengths))
    out = []
    t = 0.0
    for k, idx in enumerate(order):
        t += gap + float(extra[k])
        start = round(t * fps) / fps
        end = round((t + lengths[idx]) * fps) / fps
        out.append((start, end, labels[idx]))
        t += lengths[idx]
    return out


def _background(seed: int, height: int, width: int) -> np.ndarray:
    """A smooth random texture twice as wide as the frame, panned over time."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(60, 160, size=(height // 8 + 2, (2 * width) // 8 + 2, 3))
    # Bilinear upsampling of coarse noise gives blobs TV-L1 can track (pure noise aliases).
    ys = np.linspace(0, coarse.shape[0] - 1.001, height)
    xs = np.linspace(0, coarse.shape[1] - 1.001, 2 * width)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    c = coarse
    img = (
        (1 - fy) * (1 - fx) * c[y0][:, x0]
        + (1 - fy) * fx * c[y0][:, x0 + 1]
        + fy * (1 - fx) * c[y0 + 1][:, x0]
        + fy * fx * c[y0 + 1][:, x0 + 1]
    )
    fine = rng.normal(0, 6, size=img.shape)
    return np.clip(img + fine, 0, 255).astype(np.uint8)


def _draw_action(frame: np.ndarray, label: str, phase: float, cy: float, cx: float, scale: float) -> None:
    """Draw one action's object in place; ``phase`` is seconds since the action started."""
    h, w = frame.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    colour = np.array(_COLOURS[label], dtype=np.uint8)
    if label == "spin":  # a bar rotating about its centre, ~1 turn per second
        ang = 2 * math.pi * 1.0 * phase
        dx, dy = math.cos(ang), math.sin(ang)
        along = (xx - cx) * dx + (yy - cy) * dy
        across = -(xx - cx) * dy + (yy - cy) * dx
        mask = (np.abs(along) <= 12 * scale) & (np.abs(across) <= 2.5 * scale)
    elif label == "bounce":  # a ball bouncing vertically
        y = cy + 14 * scale * math.sin(2 * math.pi * 1.2 * phase)
        mask = (xx - cx) ** 2 + (yy - y) ** 2 <= (6 * scale) ** 2
    elif label == "slide":  # a square sliding left and right
        x = cx + 16 * scale * math.sin(2 * math.pi * 0.8 * phase)
        mask = (np.abs(xx - x) <= 6 * scale) & (np.abs(yy - cy) <= 6 * scale)
    elif label == "pulse":  # a ring growing and shrinking
        r = (7 + 5 * math.sin(2 * math.pi * 1.5 * phase)) * scale
        d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        mask = np.abs(d - r) <= 2.0 * scale
    else:
        raise ValueError(f"unknown demo action {label!r}")
    frame[mask] = colour


def render_video(video: DemoVideo, spec: DemoSpec) -> np.ndarray:
    """All frames of one planned video as uint8 (N, H, W, 3) RGB."""
    n = int(round(video.duration * spec.fps))
    bg = _background(video.background_seed, spec.height, spec.width)
    rng = np.random.default_rng(video.background_seed + 1)
    pan_speed = float(rng.uniform(8, 20)) * (1 if rng.random() < 0.5 else -1)  # px per second
    # Each action instance gets its own position and size inside the centre of the frame.
    # Object sizes and motion amplitudes are designed for 64-pixel-high frames; scale them.
    base = spec.object_scale * spec.height / 64
    placements = [
        (
            spec.height / 2 + rng.uniform(-3, 3) * base,
            spec.width / 2 + rng.uniform(-4, 4) * base,
            float(rng.uniform(0.85, 1.15)) * base,
        )
        for _ in video.segments
    ]
    frames = np.empty((n, spec.height, spec.width, 3), dtype=np.uint8)
    for i in range(n):
        t = i / spec.fps
        shift = int(round(pan_speed * t)) % (2 * spec.width)
        frame = np.roll(bg, -shift, axis=1)[:, : spec.width].copy()
        for (start, end, label), (cy, cx, sc) in zip(video.segments, placements):
            if start <= t < end:
                _draw_action(frame, label, t - start, cy, cx, sc)
        frames[i] = frame
    return frames


def write_video_file(path: str | os.PathLike, frames: np.ndarray, fps: float) -> Path:
    """Encode RGB frames as H.264 MP4, atomically (temp file in the same dir, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=int(round(fps)))
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            # Lossless (qp 0), so decoding gives back exactly the rendered frames (in yuv420p)
            # whatever choices the encoder makes. Near-lossless crf 12 was not reproducible:
            # encoding the 36 videos twice in one process gave different decoded frames for up
            # to 8 of them, even with x264 held to one thread, so the demo's mAP moved by up
            # to 12 points between identical runs.
            stream.codec_context.thread_count = 1
            stream.options = {"qp": "0", "preset": "veryfast", "threads": "1"}
            for f in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path


def ground_truth(videos: list[DemoVideo], spec: DemoSpec, subsets: tuple[str, ...] = ("test",)) -> dict[str, Any]:
    """ActivityNet-form ground truth of the videos in ``subsets``."""
    return {
        "version": "HAM-Net synthetic demo",
        "taxonomy": [{"nodeName": c} for c in spec.classes],
        "database": {
            v.video_id: {
                "subset": v.subset,
                "duration": v.duration,
                "annotations": [{"segment": [s, e], "label": lab} for s, e, lab in v.segments],
            }
            for v in videos
            if v.subset in subsets
        },
    }


def synthesize_demo(
    out_dir: str | os.PathLike,
    spec: DemoSpec = DemoSpec(),
    *,
    progress: bool = True,
    on_video: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Write the demo dataset under ``out_dir``; returns the paths of its parts.

    Layout: ``videos/<id>.mp4``, ``labels.csv`` (train videos' weak labels), ``ground_truth.json``
    (test videos, ActivityNet form), ``ground_truth_all.json`` (every video, for plots) and
    ``spec.json``. ``spec.json`` is written last: its presence means the set is complete.
    """
    out = Path(out_dir)
    videos = plan_demo(spec)
    vdir = out / "videos"
    for v in tqdm(videos, desc="synthesising demo videos", unit="video", disable=None if progress else True):
        target = vdir / f"{v.video_id}.mp4"
        if not target.exists():  # a rerun after a kill keeps the videos already written
            write_video_file(target, render_video(v, spec), spec.fps)
        if on_video:
            on_video(v.video_id)
    labels = write_labels_csv(out / "labels.csv", {v.video_id: v.labels for v in videos if v.subset == "train"})
    gt = write_json_atomic(out / "ground_truth.json", ground_truth(videos, spec, ("test",)))
    gt_all = write_json_atomic(out / "ground_truth_all.json", ground_truth(videos, spec, ("train", "test")))
    spec_path = write_json_atomic(out / "spec.json", asdict(spec))
    return {"videos": vdir, "labels": labels, "ground_truth": gt, "ground_truth_all": gt_all, "spec": spec_path}

"""Decoding at 25 fps: exact frame counts, VFR rule, rotation, real clips and bad inputs."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from extractors.decode import DecodeStats, decode_video, iter_frames
from extractors.errors import VideoError
from extractors.snippets import num_snippets
from extractors.transforms import resize_crop, resize_crop_matrix
from tests.video_synth import moving_square_frames, write_audio_only, write_video


@pytest.mark.parametrize(
    "fps, n_src, expected",
    [
        (24, 48, 50),  # 2.000 s: every 24th source frame shown twice
        (25, 50, 50),
        (Fraction(30000, 1001), 60, 51),  # 2.002 s -> ceil(50.05) = 51
        (30, 60, 50),  # every 6th source frame dropped
    ],
)
def test_frame_count_at_25fps(tmp_path, fps, n_src, expected):
    path = write_video(tmp_path / "clip.mp4", moving_square_frames(n_src, 48, 48), fps)
    frames, st = decode_video(path)
    assert frames.shape == (expected, 48, 48, 3)
    assert st.n_frames == expected and st.n_source_frames == n_src
    assert st.duration == pytest.approx(n_src / float(fps), abs=1e-9)
    assert expected == math.ceil(st.duration * 25 - 1e-9)


def test_constant_rate_selection_is_latest_frame_not_after(tmp_path):
    # 30 fps source, each frame a distinct flat grey: output i must show source floor(i*30/25).
    levels = np.arange(30) * 8 + 8
    frames = np.repeat(levels[:, None, None, None], 16 * 16 * 3, axis=1).reshape(30, 16, 16, 3).astype(np.uint8)
    path = write_video(tmp_path / "grey.mkv", frames, 30, codec="ffv1", pix_fmt="yuv444p")
    out, st = decode_video(path)
    assert len(out) == 25
    shown = out[:, 8, 8, 0].astype(int)
    expected = levels[[(i * 30) // 25 for i in range(25)]]
    np.testing.assert_allclose(shown, expected, atol=2)


def test_variable_frame_rate_follows_timestamps(tmp_path):
    pts = [0.0, 0.1, 0.15, 0.3, 0.31, 0.32, 0.5]
    levels = np.array([20, 50, 80, 110, 140, 170, 200])
    frames = np.repeat(levels[:, None, None, None], 16 * 16 * 3, axis=1).reshape(7, 16, 16, 3).astype(np.uint8)
    path = write_video(tmp_path / "vfr.mkv", frames, 25, codec="ffv1", pix_fmt="yuv444p", pts_seconds=pts)
    out, st = decode_video(path)
    n_check = 13  # output times 0 .. 0.48 s lie before the last frame's timestamp
    assert len(out) >= n_check
    for i in range(n_check):
        j = max(k for k, p in enumerate(pts) if p <= i / 25 + 1e-9)
        assert abs(int(out[i, 8, 8, 0]) - levels[j]) <= 2, (i, j)
    assert st.n_source_frames == 7


@pytest.mark.parametrize(
    "suffix, codec, pix_fmt",
    [("mkv", "ffv1", "yuv444p"), ("webm", "libvpx-vp9", "yuv420p"), ("avi", "mpeg4", "yuv420p")],
)
def test_other_containers_and_codecs(tmp_path, suffix, codec, pix_fmt):
    path = write_video(tmp_path / f"clip.{suffix}", moving_square_frames(20, 32, 32), 25, codec=codec, pix_fmt=pix_fmt)
    frames, st = decode_video(path)
    assert len(frames) == 20 and st.n_source_frames == 20 and st.codec


def test_rotation_metadata_is_applied(tmp_path):
    frames = np.zeros((5, 32, 64, 3), np.uint8)
    frames[:, :, :10] = 255  # bright band on the left edge
    path = write_video(tmp_path / "rot.mp4", frames, 25, rotation=90)
    out, st = decode_video(path)
    assert st.rotation == 90
    assert out.shape[1:3] == (64, 32)  # displayed portrait
    # 90 degrees counter-clockwise: the left edge ends up at the bottom.
    assert out[:, -6:, :, 0].mean() > 200 and out[:, :40, :, 0].mean() < 30


def test_resize_crop_matches_resize_then_crop():
    import cv2

    rng = np.random.default_rng(1)
    img = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (0, 0), 2)
    ref = cv2.resize(img, (341, 256), interpolation=cv2.INTER_LINEAR)
    x0 = (341 - 224) // 2
    ref = ref[16:240, x0 : x0 + 224]
    got = resize_crop(img, 256, 224)
    assert got.shape == (224, 224, 3)
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 2


def test_degenerate_geometry_gives_crop_sized_frames(tmp_path):
    tall = write_video(tmp_path / "tall.mp4", moving_square_frames(6, 8, 512), 25)
    frames, st = decode_video(tall, transform=lambda f: resize_crop(f, 64, 64))
    assert frames.shape == (6, 64, 64, 3) and (st.width, st.height) == (8, 512)
    tiny = write_video(tmp_path / "one.mkv", np.full((4, 1, 1, 3), 77, np.uint8), 25, codec="ffv1", pix_fmt="yuv444p")
    frames, _ = decode_video(tiny, transform=lambda f: resize_crop(f, 64, 64))
    # Documented result: a 1x1 video is upsampled to a flat crop of its single colour.
    assert frames.shape == (4, 64, 64, 3) and np.ptp(frames) <= 2
    m = resize_crop_matrix(1, 1, 64, 64)
    assert m[0, 0] == 64 and m[1, 1] == 64


def test_bad_inputs_raise_video_error(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    audio = write_audio_only(tmp_path / "audio.mp4")
    good = write_video(tmp_path / "good.mp4", moving_square_frames(30, 32, 32), 25)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # loses the moov atom
    cases = {
        empty: "empty file",
        text: "not a readable video",
        audio: "no video stream (streams present: audio)",
        truncated: "not a readable video",
        tmp_path / "missing.mp4": "no such file",
    }
    for path, reason in cases.items():
        with pytest.raises(VideoError) as ei:
            decode_video(path)
        assert str(path) in str(ei.value) and reason in str(ei.value), str(ei.value)


def test_truncated_stream_keeps_decodable_prefix(tmp_path):
    # Matroska is readable from the start, so a cut file decodes up to the cut (documented).
    full = write_video(tmp_path / "full.mkv", moving_square_frames(50, 32, 32), 25, codec="ffv1", pix_fmt="yuv444p")
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    frames, st = decode_video(cut)
    assert 10 <= len(frames) < 50
    assert st.duration == pytest.approx(len(frames) / 25, abs=0.04 + 1e-9)


def test_one_frame_video_decodes_but_is_too_short_for_flow(tmp_path):
    path = write_video(tmp_path / "one.mp4", moving_square_frames(1, 32, 32), 25)
    frames, st = decode_video(path)
    assert len(frames) == 1  # the extractor then refuses it (tests/test_extract.py)


REAL = {  # file: (source frames, duration s) from shared/data/SOURCES.md
    "demo/demo.mp4": (280, 10.0),
    "tests/data/test.mp4": (300, 10.0),
    "tests/data/test.avi": (164, 6.56),
    "demo/test_video_structuralize.mp4": (300, 10.01),
    "demo/demo_skeleton.mp4": (72, 2.57),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_clips_decode_with_consistent_counts(shared_data, name):
    n_src, duration = REAL[name]
    st = DecodeStats()
    n = 0
    for frame in iter_frames(shared_data / "videos/mmaction2" / name, 25, lambda f: resize_crop(f, 64, 64), st):
        assert frame.shape == (64, 64, 3)
        n += 1
    assert st.finished and st.n_source_frames == n_src
    assert st.duration == pytest.approx(duration, abs=0.01)
    assert n == st.n_frames == math.ceil(st.duration * 25 - 1e-9)
    assert abs(num_snippets(n) - st.duration * 25 / 16) < 1


def _faststart_copy(src: Path, dst: Path) -> Path:
    """Remux ``src`` with the index (moov) first, as web-ready MP4s are."""
    import av

    with av.open(str(src)) as i, av.open(str(dst), "w", options={"movflags": "faststart"}) as o:
        s = i.streams.video[0]
        out = o.add_stream_from_template(s)
        for p in i.demux(s):
            if p.dts is None:
                continue
            p.stream = out
            o.mux(p)
    return dst


def test_truncated_faststart_file_is_reported_with_the_time_lost(tmp_path, caplog):
    """The index claims 150 frames / 6 s; the data stops halfway: a WARNING names it all."""
    full = write_video(tmp_path / "src.mp4", moving_square_frames(150, 64, 48), 25)
    fs = _faststart_copy(full, tmp_path / "fs.mp4")
    data = fs.read_bytes()
    cut = tmp_path / "truncated_faststart.mp4"
    cut.write_bytes(data[: len(data) // 2 + 2000])
    with caplog.at_level("WARNING", logger="extractors.decode"):
        frames, st = decode_video(cut)
    assert 50 < len(frames) < 100 and st.n_source_frames < 150
    (msg,) = [w for w in st.warnings if "claims" in w]
    assert msg.startswith(f"{cut}: decoded {st.n_source_frames} of the 150 frames the container claims; lost ")
    lost = msg.split("lost ")[1].split(" s")[0]
    start, end = (float(x) for x in lost.split("-"))
    assert start == pytest.approx(st.duration, abs=0.01) and end == pytest.approx(6.0, abs=0.05)
    assert msg in caplog.text
    # The intact file: no such warning.
    _, st_full = decode_video(fs)
    assert st_full.warnings == []

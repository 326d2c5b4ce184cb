"""End to end per video: feature files, flow cache, pipelined == sequential, CLI, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import h5py
import numpy as np
import pytest

from extractors.checkpoints import CheckpointError, build_backbones
from extractors.errors import VideoError
from extractors.settings import ExtractSettings, TVL1Params
from extractors.video_features import extract_video_features
from pipeline.extract import write_flow_cache, write_video_features
from storage.featstore import read_features
from storage.flowcache import FlowCacheError
from tests.video_synth import moving_square_frames, write_video

# Small and quick, but every stage real: 32 x 32 crops, a 3-level TV-L1 pyramid.
FAST = dict(crop=32, resize_short=32, random_backbone=True, batch_size=4, tvl1=TVL1Params(nscales=3, warps=3))


@pytest.fixture(scope="module")
def models():
    return build_backbones(ExtractSettings(**FAST))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    # 37 frames at 30 fps -> 1.2333 s -> 31 frames at 25 fps -> T = 2 (second snippet padded).
    d = tmp_path_factory.mktemp("clip")
    return write_video(d / "square.mp4", moving_square_frames(37, 48, 40, square=16, dx=1, dy=1), 30)


def test_features_file_pipelined_equals_sequential_and_cache(tmp_path, clip, models):
    s_par = ExtractSettings(**FAST, flow_workers=2)
    s_seq = ExtractSettings(**FAST, flow_workers=1)
    with pytest.warns(UserWarning, match="RANDOM I3D backbone"):
        out = write_video_features(clip, tmp_path / "a.h5", s_par, video_id="square", models=models, progress=False)
    f = read_features(out)
    assert f.rgb.shape == (2, 1024) and f.flow.shape == (2, 1024)
    assert f.attrs["n_frames"] == 31 and f.attrs["duration"] == pytest.approx(37 / 30)
    assert f.num_snippets == math.ceil(31 / 16)
    assert f.attrs["random_backbone"] is True or f.attrs["random_backbone"] == 1
    assert f.attrs["feature_key"] == s_par.feature_key() and f.attrs["flow_key"] == s_par.flow_key()
    assert f.settings["crop"] == 32 and f.settings["random_backbone"] is True
    assert np.isfinite(f.rgb).all() and np.isfinite(f.flow).all()
    assert not np.allclose(f.flow[0], f.flow[1])  # the padded snippet differs from the full one

    # Sequential (inline flow) gives the very same numbers as the process pool.
    seq = extract_video_features(clip, s_seq, models=models, progress=False)
    np.testing.assert_array_equal(seq.rgb, f.rgb)
    np.testing.assert_array_equal(seq.flow, f.flow)

    # Through the flow cache: N-1 quantised fields stored, and identical features.
    cache = write_flow_cache(clip, tmp_path / "flow.h5", s_seq, progress=False)
    with h5py.File(cache) as h:
        assert h["flow"].shape == (30, 32, 32, 2) and h["flow"].dtype == np.uint8
        assert h.attrs["flow_key"] == s_seq.flow_key() and h.attrs["n_frames"] == 31
    with pytest.warns(UserWarning):
        out2 = write_video_features(
            clip, tmp_path / "b.h5", s_seq, video_id="square", flow_cache=cache, models=models, progress=False
        )
    g = read_features(out2)
    np.testing.assert_array_equal(g.flow, f.flow)
    np.testing.assert_array_equal(g.rgb, f.rgb)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.h5", "flow.h5"]  # no partials


def test_flow_cache_from_other_settings_is_refused(tmp_path, clip, models):
    s = ExtractSettings(**FAST, flow_workers=1)
    cache = write_flow_cache(clip, tmp_path / "flow.h5", s, progress=False)
    other = s.replace(flow_bound=10.0)
    with pytest.raises(FlowCacheError, match="other flow settings"), pytest.warns(UserWarning):
        write_video_features(
            clip, tmp_path / "x.h5", other, video_id="x", flow_cache=cache, models=models, progress=False
        )
    assert not (tmp_path / "x.h5").exists()


def test_settings_keys_and_strictness(tmp_path):
    s = ExtractSettings()
    assert s.replace(batch_size=2, device="cpu", flow_workers=3).feature_key() == s.feature_key()
    assert s.replace(frames_per_snippet=8).flow_key() == s.flow_key()
    assert s.replace(frames_per_snippet=8).feature_key() != s.feature_key()
    assert s.replace(tvl1=TVL1Params(warps=1)).flow_key() != s.flow_key()
    ck = tmp_path / "w.pt"
    ck.write_bytes(b"a")
    k1 = s.replace(rgb_checkpoint=str(ck)).feature_key()
    ck.write_bytes(b"bb")  # new content -> new key, same path
    assert s.replace(rgb_checkpoint=str(ck)).feature_key() != k1
    with pytest.raises(ValueError, match=r"unknown setting.*extract\.crops"):
        ExtractSettings.from_dict({"crops": 3})
    with pytest.raises(ValueError, match=r"unknown setting.*extract\.tvl1\.lambda\b"):
        ExtractSettings.from_dict({"tvl1": {"lambda": 0.1}})
    with pytest.raises(ValueError, match="flow_backend"):
        ExtractSettings.from_dict({"flow_backend": "farneback"})
    from pipeline.config import default_config

    # the defaults' YAML form reads back into the same settings, key for key
    section = default_config()["extract"]
    assert ExtractSettings.from_dict(section) == ExtractSettings()
    assert ExtractSettings.from_dict(section).to_dict() == section


def test_no_checkpoints_is_refused():
    with pytest.raises(CheckpointError, match="no I3D weights given"):
        build_backbones(ExtractSettings())


def test_short_and_bad_videos(tmp_path, models):
    s = ExtractSettings(**FAST, flow_workers=1)
    short = write_video(tmp_path / "short.mp4", moving_square_frames(5, 32, 32), 25)
    res = extract_video_features(short, s, models=models, progress=False)
    assert res.rgb.shape == (1, 1024) and res.stats.n_frames == 5  # one padded snippet (documented)
    one = write_video(tmp_path / "one.mp4", moving_square_frames(1, 32, 32), 25)
    text = tmp_path / "text.mp4"
    text.write_text("hello\n")
    for bad, why in [(one, "too short: 1 frame"), (text, "not a readable video")]:
        with pytest.raises(VideoError, match=why):
            write_video_features(
                bad,
                tmp_path / "out.h5",
                s.replace(random_backbone=False, rgb_checkpoint="x", flow_checkpoint="y"),
                video_id="v",
                models=models,
                progress=False,
            )
        assert not list(tmp_path.glob("out.h5*")) and not list(tmp_path.glob(".out.h5*"))


def test_cli_refuses_without_weights_and_marks_random(tmp_path, clip, capsys):
    from extractors.__main__ import main

    args = [str(clip), "--output", str(tmp_path / "f.h5"), "--quiet"]
    assert main(args) == 2
    assert "checkpoints are required" in capsys.readouterr().err and not (tmp_path / "f.h5").exists()
    with pytest.warns(UserWarning, match="RANDOM"):
        rc = main(
            args
            + [
                "--random-backbone",
                "--overrides",
                "extract.crop=32 extract.resize_short=32",
                "--overrides",
                "extract.flow_workers=1",
            ]
        )
    assert rc == 0
    assert "WARNING" in capsys.readouterr().err
    f = read_features(tmp_path / "f.h5")
    assert bool(f.attrs["random_backbone"]) and f.rgb.shape == (2, 1024) and f.video_id == "square"
    with pytest.warns(UserWarning):
        assert main([str(tmp_path / "nope.mp4"), "--output", str(tmp_path / "g.h5"), "--random-backbone"]) == 2
    assert "nope.mp4: no such file" in capsys.readouterr().err


def test_cli_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "extractors", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--rgb-checkpoint" in r.stdout


@pytest.mark.slow
def test_real_clip_end_to_end(shared_data, tmp_path):
    video = shared_data / "videos/mmaction2/tests/data/test.avi"
    s = ExtractSettings(crop=112, resize_short=128, random_backbone=True)
    out = write_video_features(video, tmp_path / "test.h5", s, video_id="test", progress=False)
    f = read_features(out)
    assert f.attrs["n_frames"] == 164 and f.num_snippets == 11
    assert json.loads(f.attrs["settings"])["crop"] == 112


def test_decoding_is_streamed_not_read_ahead(tmp_path, monkeypatch):
    """A consumer that stops after one snippet must not cause the whole video to be decoded
    (a 20-minute video would otherwise pile up in memory): read-ahead is a few snippets.

    Deterministic, no sleeping: the decoder thread's frame source is counted, and its queue
    reports when a put gives up because the queue stayed full (the decoder is then stuck until
    the consumer takes a group, so its count can grow no further). The test waits for that, or
    for the source to run dry (the failure mode: everything decoded ahead), then reads the count.
    """
    import queue
    import threading
    import types

    from extractors import video_features as vf
    from extractors.decode import DecodeStats

    settled = threading.Event()  # set when the decoder is stuck on a full queue, or has decoded everything
    exhausted = threading.Event()  # set when the source has no frames left
    decoded = 0

    def counting_frames(*args, **kwargs):
        nonlocal decoded
        for frame in real_iter_frames(*args, **kwargs):
            decoded += 1
            yield frame
        exhausted.set()
        settled.set()

    class WatchedQueue(queue.Queue):
        def put(self, item, block=True, timeout=None):
            try:
                super().put(item, block, timeout)
            except queue.Full:
                settled.set()
                raise

    real_iter_frames = vf.iter_frames
    monkeypatch.setattr(vf, "iter_frames", counting_frames)
    monkeypatch.setattr(vf, "queue", types.SimpleNamespace(Queue=WatchedQueue, Full=queue.Full, Empty=queue.Empty))

    path = write_video(tmp_path / "long.mp4", moving_square_frames(400, 32, 32, square=8, dx=0.1, dy=0), 25)
    s = ExtractSettings(crop=16, resize_short=16, flow_workers=1)
    st = DecodeStats()
    zeros = np.zeros((399, 16, 16, 2), np.uint8)  # stands in for a flow cache: no TV-L1 cost here
    it = vf.iter_snippets(path, s, stats=st, cached_flow=zeros)
    first = next(it)
    assert first.rgb.shape == (16, 16, 16, 3)
    # From here the consumer is paused; a stall seen after this point is the decoder's final state.
    settled.clear()
    if not exhausted.is_set():
        assert settled.wait(timeout=60), "the decoder neither filled its queue nor finished within 60 s"
    assert decoded <= 8 * 16 < 400, f"{decoded} of 400 frames decoded while one snippet was consumed"
    rest = list(it)
    assert len(rest) == 24 and decoded == st.n_frames == 400 and rest[-1].flow.shape[0] == 15

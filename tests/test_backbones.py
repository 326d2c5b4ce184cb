"""RGB-only backbones (extractors/backbones.py, extractors/rgb_features.py).

* the feature is the input of the library model's own classifier: ``classifier(feature)``
  equals the unmodified library model's forward on the same clip (seeded weights);
* published checkpoint layouts load (files built here from the models themselves, in
  torchvision's plain and pytorchvideo's ``model_state`` form), wrong files are listed;
* clip sampling follows the contract, end to end through a real video file.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from extractors.backbones import (
    RGB_ONLY_BACKBONES,
    SPECS,
    InputContract,
    build_library_model,
    effective_contract,
    joint_feature_dim,
    load_rgb_checkpoint,
    random_rgb_backbone,
    seeded_init,
    to_feature_model,
)
from extractors.checkpoints import CheckpointError, build_backbones
from extractors.decode import decode_video
from extractors.rgb_features import ClipRunner, clip_indices, extract_rgb_features, iter_clips
from extractors.settings import ExtractSettings
from extractors.transforms import resize_crop
from pipeline.extract import write_video_features
from storage.featstore import read_features
from tests.video_synth import moving_square_frames, write_video

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Constructor kwargs and clip shapes at which the library's own (fixed-size) head pool covers
# the whole last feature map, so its forward is defined and is the global average we take.
SMALL = {
    "swin3d_t": ({}, (2, 3, 4, 32, 32)),
    "r2plus1d_18": ({}, (2, 3, 4, 32, 32)),
    # hub x3d_m fixes clip 16 and crop 224; the builder it calls (create_x3d) takes smaller ones.
    "x3d_m": ({"input_clip_length": 4, "input_crop_size": 64}, (2, 3, 4, 64, 64)),
    "i3d_r50": ({"head_pool_kernel_size": (2, 2, 2)}, (2, 3, 4, 64, 64)),
}
# Published sizes (the head pool is fixed to them): s3d 2x7x7 after 16 x 224^2, slow_r50 8x7x7.
NATIVE = {
    "s3d": ({}, (1, 3, 16, 224, 224)),
    "slow_r50": ({}, (1, 3, 8, 224, 224)),
    "x3d_m": ({}, (1, 3, 16, 224, 224)),
}


def _library_model(name: str, **kwargs):
    if name == "x3d_m" and kwargs:
        from pytorchvideo.models.x3d import create_x3d

        return create_x3d(model_num_class=400, **kwargs).eval()
    return build_library_model(name, **kwargs)


def _classify(name: str, full, feat: torch.Tensor) -> torch.Tensor:
    """The library model's classifier applied to our feature (the last step of its forward)."""
    if name == "s3d":
        return full.classifier(feat[:, :, None, None, None]).flatten(1)
    if name == "swin3d_t":
        return full.head(feat)
    if name == "r2plus1d_18":
        return full.fc(feat)
    return full.blocks[-1].proj(feat)


def _check_feature_is_classifier_input(name: str, kwargs: dict, shape: tuple) -> None:
    full = seeded_init(_library_model(name, **kwargs), seed=3)
    if SPECS[name].library == "pytorchvideo":
        full.blocks[-1].activation = None  # X3D's head ends in a softmax: compare the logits before it
    feat_model = to_feature_model(name, copy.deepcopy(full))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        logits = full(x)
        feat = feat_model(x)
        assert feat.shape == (shape[0], SPECS[name].feature_dim)
        again = _classify(name, full, feat)
    torch.testing.assert_close(again, logits, rtol=1e-4, atol=1e-4 * float(logits.abs().max()))
    if shape[0] > 1:
        assert not torch.allclose(feat[0], feat[-1])  # a real function of the input


@pytest.mark.parametrize("name", sorted(SMALL))
def test_feature_is_the_library_classifier_input(name):
    _check_feature_is_classifier_input(name, *SMALL[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NATIVE))
def test_feature_is_the_library_classifier_input_native_size(name):
    _check_feature_is_classifier_input(name, *NATIVE[name])


def test_every_backbone_gives_its_width_on_small_clips():
    x = torch.rand(1, 3, 8, 48, 48)
    for name in RGB_ONLY_BACKBONES:
        m = random_rgb_backbone(name, seed=0)
        with torch.inference_mode():
            f = m.features(x)
        assert f.shape == (1, SPECS[name].feature_dim) and torch.isfinite(f).all(), name
        assert joint_feature_dim(name) == SPECS[name].feature_dim
    assert joint_feature_dim("i3d") == 2048


def _save(name: str, model, path, *, wrap: bool) -> None:
    sd = model.state_dict()
    torch.save({"model_state": sd, "epoch": 196} if wrap else sd, path)


@pytest.mark.parametrize(("name", "wrap"), [("s3d", False), ("x3d_m", True)])
def test_published_layout_loads_and_gives_the_same_features(tmp_path, name, wrap):
    src = seeded_init(build_library_model(name), seed=7)
    path = tmp_path / SPECS[name].checkpoint_file
    _save(name, src, path, wrap=wrap)  # torchvision: plain state dict; pytorchvideo: {"model_state": ...}
    loaded = load_rgb_checkpoint(name, path)
    ref = to_feature_model(name, copy.deepcopy(src))
    x = torch.rand(1, 3, 8, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.features(x), ref(x).flatten(1))
    # The backbone the pipeline builds from settings is the same network.
    s = ExtractSettings(backbone=name, rgb_checkpoint=str(path))
    rgb, flow = build_backbones(s)
    assert flow is None
    with torch.inference_mode():
        torch.testing.assert_close(rgb.features(x), ref(x).flatten(1))


def test_class_count_is_read_from_the_file(tmp_path):
    src = seeded_init(build_library_model("r2plus1d_18", num_classes=600), seed=1)
    _save("r2plus1d_18", src, tmp_path / "k600.pth", wrap=False)
    m = load_rgb_checkpoint("r2plus1d_18", tmp_path / "k600.pth")
    assert m.features(torch.rand(1, 3, 4, 32, 32)).shape == (1, 512)


def test_wrong_files_are_listed(tmp_path):
    sd = build_library_model("x3d_m").state_dict()
    bad = dict(sd)
    bad.pop("blocks.0.conv.conv_t.weight")
    bad["blocks.9.extra.weight"] = torch.zeros(3)
    bad["blocks.5.pool.post_conv.weight"] = torch.zeros(1024, 432, 1, 1, 1)
    torch.save({"model_state": bad}, tmp_path / "bad.pyth")
    with pytest.raises(CheckpointError) as e:
        load_rgb_checkpoint("x3d_m", tmp_path / "bad.pyth")
    msg = str(e.value)
    assert "bad.pyth" in msg and "X3D_M.pyth" in msg
    assert "missing: blocks.0.conv.conv_t.weight" in msg
    assert "unexpected: blocks.9.extra.weight" in msg
    assert "wrong shape: blocks.5.pool.post_conv.weight (1024, 432, 1, 1, 1) (network: (2048, 432, 1, 1, 1))" in msg
    # Another backbone's file: everything is listed as missing/unexpected, nothing loads.
    torch.save(build_library_model("r2plus1d_18").state_dict(), tmp_path / "r2p1d.pth")
    with pytest.raises(CheckpointError, match=r"does not fit pytorchvideo x3d_m.*missing: .*unexpected: fc\.bias"):
        load_rgb_checkpoint("x3d_m", tmp_path / "r2p1d.pth")
    # Not a weights file, or one that needs code to unpickle: refused, naming the file.
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth: not a loadable"):
        load_rgb_checkpoint("s3d", tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="no weights for backbone 's3d'.*s3d-d76dad2f.pth"):
        build_backbones(ExtractSettings(backbone="s3d"))


def test_settings_rules():
    s = ExtractSettings(backbone="x3d_m", random_backbone=True)
    assert not s.needs_flow and ExtractSettings().needs_flow
    with pytest.raises(ValueError, match="extract.flow_checkpoint: backbone 'x3d_m' is RGB only"):
        ExtractSettings(backbone="x3d_m", flow_checkpoint="flow_imagenet.pt")
    with pytest.raises(ValueError, match="extract.backbone"):
        ExtractSettings(backbone="mvit_v2_s")
    # Flow settings do not touch RGB-only features (no rerun); backbone, seed and geometry do.
    assert s.feature_key() == s.replace(flow_backend="torch", flow_bound=10.0).feature_key()
    assert s.feature_key() != s.replace(backbone="slow_r50").feature_key()
    assert s.feature_key() != s.replace(random_seed=1).feature_key()
    assert s.feature_key() != s.replace(crop=112).feature_key()  # random weights: crop from settings
    # Real weights: the published geometry is used, whatever resize_short/crop say.
    real = ExtractSettings(backbone="r2plus1d_18", rgb_checkpoint="/nonexistent.pth")
    assert effective_contract(real) == SPECS["r2plus1d_18"].contract
    assert effective_contract(real).resize == (128, 171) and effective_contract(real).crop == 112
    assert effective_contract(s).resize == (256,) and effective_contract(s).crop == 224


def test_clip_indices_follow_the_contract():
    i3d_like = InputContract(16, 25.0, (256,), 224, (0.5,) * 3, (0.5,) * 3)
    for k in (0, 1, 7):  # 16 frames at 25 fps are exactly the snippet's own frames
        assert clip_indices(k, 16, 25.0, i3d_like).tolist() == list(range(16 * k, 16 * k + 16))
    slow = SPECS["slow_r50"].contract  # 8 frames, every 8th frame of 30 fps: 6.667 frames at 25 fps
    idx = clip_indices(2, 16, 25.0, slow)
    assert idx.tolist() == [16, 23, 30, 36, 43, 50, 56, 63]  # floor(40 + (j - 3.5) * 6.667)
    assert (idx[-1] - idx[0]) / 25 == pytest.approx(7 / slow.sample_fps, abs=1 / 25)
    assert np.mean(idx) == pytest.approx(2 * 16 + 8 - 0.5, abs=0.5)  # centred on the snippet


def test_clips_of_a_real_video_follow_the_contract(tmp_path):
    # Frame i is flat grey 8 * i + 4, so a decoded frame tells which 25 fps frame it is.
    frames = np.stack([np.full((32, 32, 3), 8 * i + 4, np.uint8) for i in range(30)])
    video = write_video(tmp_path / "ramp.mp4", frames, 25)
    contract = InputContract(4, 25.0 / 6, (16,), 16, (0.5,) * 3, (0.5,) * 3)
    s = ExtractSettings(fps=25.0, resize_short=16, crop=16)
    from extractors.decode import DecodeStats

    st = DecodeStats()
    clips = list(iter_clips(video, s, contract, st))
    assert st.n_frames == 30 and len(clips) == 2  # ceil(30 / 16)
    for k, c in enumerate(clips):
        seen = np.rint((c.reshape(4, -1).mean(1) - 4) / 8).astype(int)
        assert seen.tolist() == np.clip(clip_indices(k, 16, 25.0, contract), 0, 29).tolist()


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    # 37 frames at 30 fps -> 31 frames at 25 fps -> 2 snippets (the second partial).
    d = tmp_path_factory.mktemp("rgbclip")
    return write_video(d / "square.mp4", moving_square_frames(37, 48, 40, square=16, dx=1, dy=1), 30)


def test_feature_file_rgb_only_equals_the_library_forward(tmp_path, clip_file):
    s = ExtractSettings(backbone="x3d_m", random_backbone=True, resize_short=32, crop=32, batch_size=4)
    with pytest.warns(UserWarning, match="RANDOM x3d_m backbone"):
        out = write_video_features(clip_file, tmp_path / "f.h5", s, video_id="square", progress=False)
    f = read_features(out)
    assert f.flow is None and f.attrs["streams"] == "rgb" and f.attrs["feature_dim"] == 2048
    assert f.rgb.shape == (2, 2048) and f.joint() is f.rgb
    assert f.attrs["feature_key"] == s.feature_key() and f.attrs["backbone"] == "x3d_m"
    assert f.seconds_per_snippet == pytest.approx(16 / 25)
    import h5py

    with h5py.File(out) as h:
        assert set(h) == {"rgb"}

    # The same numbers by hand: decode, pick the contract's frames, normalise, library forward.
    contract = effective_contract(s)
    all_frames, _ = decode_video(clip_file, 25.0, lambda x: resize_crop(x, 32, 32))
    assert all_frames.shape[0] == 31
    full = seeded_init(build_library_model("x3d_m"), s.random_seed)
    full.blocks[-1].activation = None
    feats = to_feature_model("x3d_m", copy.deepcopy(full))
    runner = ClipRunner(random_rgb_backbone("x3d_m", 0), contract)
    for k in range(2):
        idx = np.clip(clip_indices(k, 16, 25.0, contract), 0, 30)
        x = runner.normalise(all_frames[idx][None])
        assert x.shape == (1, 3, 16, 32, 32)
        mean = torch.tensor([0.45] * 3).view(1, 3, 1, 1, 1)
        assert torch.allclose(x * 0.225 + mean, torch.from_numpy(all_frames[idx][None]).permute(0, 4, 1, 2, 3) / 255)
        with torch.inference_mode():
            np.testing.assert_allclose(f.rgb[k], feats(x)[0].numpy(), rtol=1e-4, atol=1e-4)


def test_too_short_and_unreadable_videos(tmp_path):
    from extractors.errors import VideoError

    s = ExtractSettings(backbone="x3d_m", random_backbone=True, resize_short=32, crop=32)
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(VideoError, match="text.mp4"):
        extract_rgb_features(tmp_path / "text.mp4", s, progress=False)
    # One frame is enough without flow: one snippet of repeated frames.
    one = write_video(tmp_path / "one.mp4", moving_square_frames(1, 32, 32, square=8), 25)
    r = extract_rgb_features(one, s, progress=False)
    assert r.rgb.shape == (1, 2048) and r.stats.n_frames == 1


@pytest.mark.parametrize("name", ["s3d", "swin3d_t", "r2plus1d_18"])
def test_frames_match_torchvision_published_transforms(name):
    """Our geometry + normalisation == the weights' own ``transforms()`` (antialias off, as
    torchvision hard-codes), on 340x256 frames like THUMOS-sized video, to rounding."""
    import cv2
    import torchvision.models.video as tvm

    from extractors.rgb_features import frame_transform, normalise_clips

    weights = {"s3d": tvm.S3D_Weights, "swin3d_t": tvm.Swin3D_T_Weights, "r2plus1d_18": tvm.R2Plus1D_18_Weights}[name]
    rng = np.random.default_rng(0)
    frames = np.stack(
        [cv2.GaussianBlur(rng.integers(0, 256, (256, 340, 3), dtype=np.uint8), (0, 0), 2.0) for _ in range(3)]
    )
    contract = SPECS[name].contract
    ours = np.stack([frame_transform(contract)(f) for f in frames])
    x = normalise_clips(ours[None], contract)[0]
    ref = weights.KINETICS400_V1.transforms()(torch.from_numpy(frames).permute(0, 3, 1, 2))
    assert x.shape == ref.shape == (3, 3, contract.crop, contract.crop)
    one_level = 1 / 255 / min(contract.std)
    diff = (x - ref).abs()
    # Measured: s3d and swin3d_t identical; r2plus1d_18 one grey level at a few pixels.
    assert float(diff.max()) <= 1.01 * one_level and float(diff.mean()) <= 0.01 * one_level


def test_cli_rgb_only(tmp_path, clip_file, capsys):
    from cli.extract import main

    out = tmp_path / "cli.h5"
    assert main([str(clip_file), "--output", str(out), "--overrides", "extract.backbone=x3d_m", "--quiet"]) == 2
    assert "backbone x3d_m needs its Kinetics weights" in capsys.readouterr().err and not out.exists()
    args = [
        str(clip_file),
        "--output",
        str(out),
        "--overrides",
        "extract.backbone=x3d_m",
        "--random-backbone",
        "--quiet",
    ]
    with pytest.warns(UserWarning, match="RANDOM x3d_m"):
        assert main([*args, "--overrides", "extract.crop=32 extract.resize_short=32"]) == 0
    f = read_features(out)
    assert f.flow is None and f.rgb.shape == (2, 2048)
    assert "x3d_m weights are RANDOM" in capsys.readouterr().err


def test_localizing_features_of_another_width_fails_clearly():
    from hamnet.config import LocalizeConfig, ModelConfig
    from hamnet.localize import localize_video
    from hamnet.model import build_hamnet

    model = build_hamnet(ModelConfig(feature_dim=16, hidden_dim=8, attention_hidden=8), 2)
    ok = localize_video(model, np.random.rand(6, 16), ["a", "b"], LocalizeConfig(), video_id="v")
    assert ok.attention.shape == (6,)
    with pytest.raises(ValueError, match=r"'v': features are 12-D but the model was trained on 16-D"):
        localize_video(model, np.random.rand(6, 12), ["a", "b"], LocalizeConfig(), video_id="v")

from pathlib import Path

import h5py
import numpy as np
import pytest

from core.hashing import settings_hash
from pipeline.config import ConfigError, load_config, parse_overrides
from storage.featstore import (
    FeatureStore,
    FeatureStoreError,
    assign_video_ids,
    read_features,
    safe_video_id,
    write_features,
)


def test_dataset_configs_inherit_and_override():
    th = load_config("thumos14")
    an = load_config("activitynet12")
    assert th["model"]["smooth_kernel"] == 0 and an["model"]["smooth_kernel"] == 17
    assert th["train"]["epochs"] == 100 and an["train"]["epochs"] == 20
    assert an["extract"]["fps"] == 25.0  # from the shared base
    cfg = load_config("thumos14", ["train.epochs=3", "localize.attention_thresholds=[0.2, 0.5]"])
    assert cfg["train"]["epochs"] == 3 and cfg["localize"]["attention_thresholds"] == [0.2, 0.5]
    with pytest.raises(ConfigError, match="train.epoch"):
        load_config("thumos14", ["train.epoch=3"])


def test_nested_settings_merge_key_by_key():
    demo, base = load_config("demo"), load_config("thumos14")
    # demo.yaml sets only the pyramid; the other TV-L1 values come from the base.
    assert demo["extract"]["tvl1"]["nscales"] == 3 and demo["extract"]["tvl1"]["warps"] == 3
    assert {k: v for k, v in demo["extract"]["tvl1"].items() if k not in ("nscales", "warps")} == {
        k: v for k, v in base["extract"]["tvl1"].items() if k not in ("nscales", "warps")
    }
    with pytest.raises(ConfigError, match="nscale"):
        load_config("thumos14", ["extract.tvl1.nscale=3"])


def test_exponent_without_dot_is_a_float():
    # YAML 1.1 reads "1e-3" as a string; users type learning rates that way.
    cfg = load_config("thumos14", ["train.lr=1e-3", "train.weight_decay=5E-4", "train.seed=7"])
    assert cfg["train"]["lr"] == 0.001 and isinstance(cfg["train"]["lr"], float)
    assert cfg["train"]["weight_decay"] == 0.0005
    assert cfg["train"]["seed"] == 7 and isinstance(cfg["train"]["seed"], int)


def test_unknown_key_in_dataset_file_is_rejected(tmp_path: Path):
    (tmp_path / "b.yaml").write_text("train: {epochs: 1}\n")
    (tmp_path / "d.yaml").write_text("inherit: [b.yaml]\ntrain: {epohcs: 2}\n")
    with pytest.raises(ConfigError, match="epohcs"):
        load_config(tmp_path / "d.yaml")


def test_parse_overrides_keeps_list_values():
    assert parse_overrides("train.epochs=5 localize.attention_thresholds=[0.1, 0.2]") == [
        "train.epochs=5",
        "localize.attention_thresholds=[0.1, 0.2]",
    ]
    assert settings_hash({"a": 1}) == settings_hash({"a": 1}) != settings_hash({"a": 2})


def test_feature_roundtrip_and_atomicity(tmp_path: Path):
    rgb = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    flow = rgb[::-1].copy()
    p = write_features(
        tmp_path / "v.h5",
        rgb,
        flow,
        video_id="v",
        fps=25,
        frames_per_snippet=16,
        n_frames=112,
        duration=4.48,
        source="v.mp4",
        settings={"crop": 224},
    )
    rec = read_features(p)
    np.testing.assert_array_equal(rec.rgb, rgb)
    assert rec.joint().shape == (7, 8) and rec.settings == {"crop": 224}
    assert rec.seconds_per_snippet == pytest.approx(0.64)
    assert list(tmp_path.iterdir()) == [p]  # no temporary left behind
    store = FeatureStore(tmp_path)
    assert list(store) == ["v"] and store["v"].shape == (7, 8)
    with pytest.raises(FeatureStoreError, match="equal T|T="):
        write_features(
            tmp_path / "w.h5",
            rgb,
            flow[:3],
            video_id="w",
            fps=25,
            frames_per_snippet=16,
            n_frames=1,
            duration=1,
            source="w",
        )
    assert not (tmp_path / "w.h5").exists()


def test_read_rejects_incomplete_file(tmp_path: Path):
    p = tmp_path / "bad.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("rgb", data=np.zeros((2, 3)))
    with pytest.raises(FeatureStoreError, match="bad.h5.*flow"):
        read_features(p)
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(FeatureStoreError, match="junk.h5"):
        read_features(tmp_path / "junk.h5")


def test_safe_ids():
    assert safe_video_id("video_test_0000004.mp4") == "video_test_0000004"
    assert safe_video_id("../../etc/passwd") == "passwd"
    assert safe_video_id("Crème brûlée clip.avi") == "Creme_brulee_clip"
    assert safe_video_id("..") == "video"
    ids = assign_video_ids(["a b.mp4", "a_b.mp4", "A_B.avi", "c.mp4"])
    assert ids["c.mp4"] == "c"
    assert len(set(ids.values())) == 4
    assert all(v.startswith(("a_b-", "A_B-")) for k, v in ids.items() if k != "c.mp4")

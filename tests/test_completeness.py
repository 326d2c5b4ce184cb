"""The completeness benchmark generator: THUMOS14 structure, core/extent/background, seeded."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cli.completeness import main
from core.activitynet import read_ground_truth_json
from storage.annotations import read_wtalc_annotations
from storage.featstore import FeatureStore
from storage.labels import read_labels_csv
from studies.completeness import (
    BenchmarkSettings,
    generate_benchmark,
    load_structure,
    make_prototypes,
    snippet_masks,
    snippets_in_duration,
)

WTALC = "thumos14/wtalc/Thumos14reduced-Annotations"
SMALL = dict(feature_dim=32, num_train_videos=6, num_test_videos=5)


def test_real_structure_is_kept(tmp_path, shared_data):
    structure = load_structure(wtalc_annotations=shared_data / WTALC)
    summary = generate_benchmark(
        tmp_path, BenchmarkSettings(feature_dim=16), structure=structure, max_videos_per_subset=3, progress=False
    )
    assert summary["videos"] == {"test": 3, "validation": 3}
    real = read_wtalc_annotations(shared_data / WTALC)["database"]
    gt = read_ground_truth_json(tmp_path / "gt.json")
    assert len(gt["database"]) == 6 and gt["classes"] == structure["classes"]
    store = FeatureStore(tmp_path / "features")
    assert sorted(store) == sorted(gt["database"])
    for vid, e in gt["database"].items():
        assert e["annotations"] == real[vid]["annotations"] and e["duration"] == real[vid]["duration"]
        rec = store.record(vid)
        assert rec.joint().shape == (math.ceil(e["duration"] * 25 / 16), 16)
        assert rec.rgb.shape[1] == rec.flow.shape[1] == 8
        assert rec.attrs["synthetic"] and rec.attrs["fps"] == 25.0 and rec.attrs["frames_per_snippet"] == 16
        assert rec.settings["generator"] == "studies.completeness" and rec.settings["feature_dim"] == 16
    labels = read_labels_csv(tmp_path / "labels.csv")
    assert labels == {v: sorted({a["label"] for a in e["annotations"]}) for v, e in gt["database"].items()}
    assert json.loads((tmp_path / "benchmark.json").read_text())["segments"]["test"] == sum(
        len(e["annotations"]) for e in gt["database"].values() if e["subset"] == "test"
    )


def test_full_thumos_structure_counts(shared_data):
    s = load_structure(wtalc_annotations=shared_data / WTALC)
    assert len(s["database"]) == 412
    assert sum(len(e["annotations"]) for e in s["database"].values()) == 6365
    t = load_structure(
        thumos_annotation_dirs=[str(shared_data / "thumos14/cmcs/thumos14-test-annotations")],
        thumos_meta=[str(shared_data / "thumos14/cmcs/thumos14-test-meta.mat")],
    )
    assert len(t["database"]) == 212  # video 1292 (Ambiguous only) has no action to place
    assert sum(len(e["annotations"]) for e in t["database"].values()) == 3358


def test_core_extent_background_structure():
    s = BenchmarkSettings(feature_dim=512, core_fraction=0.25, noise_std=0.5)
    classes = ["A", "B"]
    protos = make_prototypes(s, 2, np.random.default_rng([s.seed, 2]))
    rng = np.random.default_rng(5)
    T = snippets_in_duration(100.0)
    anns = [{"segment": [10.0, 30.0], "label": "A"}, {"segment": [50.0, 56.0], "label": "B"}]
    core, extent = snippet_masks(anns, classes, T, s, rng)
    a_snips = (core == 0) | (extent == 0)
    assert a_snips.sum() == pytest.approx(20 / 0.64, abs=2)
    assert (core == 0).sum() == round(0.25 * a_snips.sum())
    idx = np.flatnonzero(core == 0)
    assert np.all(np.diff(idx) == 1), "the core is one contiguous run inside the instance"
    assert not np.any((core >= 0) & (extent >= 0))
    from studies.completeness import video_features

    x = video_features(T, core, extent, protos, s, rng)
    on_core = x @ protos.core[0]
    on_ext = x @ protos.extent[0]
    bg = (core < 0) & (extent < 0)
    # core snippets carry the strong class-A core prototype; extent snippets the weaker extent one
    assert on_core[core == 0].mean() == pytest.approx(s.core_strength, abs=0.3)
    assert on_ext[extent == 0].mean() == pytest.approx(s.extent_strength, abs=0.3)
    assert abs(on_core[bg].mean()) < 0.3 and abs(on_ext[bg].mean()) < 0.3
    # background is temporally correlated (scenes + AR(1)), white noise alone would not be
    b = x[bg]
    lag1 = np.mean(np.sum(b[1:] * b[:-1], 1)) / np.mean(np.sum(b * b, 1))
    assert lag1 > 0.5


def test_seeded_and_deterministic(tmp_path):
    a = generate_benchmark(tmp_path / "a", BenchmarkSettings(seed=3, **SMALL), progress=False)
    b = generate_benchmark(tmp_path / "b", BenchmarkSettings(seed=3, **SMALL), progress=False)
    generate_benchmark(tmp_path / "c", BenchmarkSettings(seed=4, **SMALL), progress=False)
    sa, sb, sc = (FeatureStore(tmp_path / k / "features") for k in "abc")
    assert list(sa) == list(sb)
    assert all(np.array_equal(sa[v], sb[v]) for v in sa)
    assert a["segments"] == b["segments"]
    assert list(sa) != list(sc) or any(not np.array_equal(sa[v], sc[v]) for v in sa)


def test_drawn_structure_is_thumos_like(tmp_path):
    summary = generate_benchmark(
        tmp_path, BenchmarkSettings(feature_dim=8, num_train_videos=40, num_test_videos=30), progress=False
    )
    assert summary["videos"] == {"test": 30, "validation": 40}
    assert len(summary["classes"]) == 20
    per_video = (summary["segments"]["test"] + summary["segments"]["validation"]) / 70
    assert 5 < per_video < 30  # THUMOS14: ~15 instances per video
    assert 0.1 < summary["action_fraction"] < 0.5  # THUMOS14: ~29 % of snippets are action
    gt = read_ground_truth_json(tmp_path / "gt.json")
    for e in gt["database"].values():
        segs = sorted(a["segment"] for a in e["annotations"])
        assert all(s[1] <= t[0] + 1e-6 for s, t in zip(segs, segs[1:])), "instances do not overlap"
        assert segs[-1][1] <= e["duration"] + 0.1


def test_settings_are_strict_and_cli(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown key.*'feature_dims'"):
        BenchmarkSettings.from_dict({"feature_dims": 8})
    with pytest.raises(ValueError, match="even"):
        BenchmarkSettings.from_dict({"feature_dim": 7})
    assert (
        main(
            [
                str(tmp_path / "cli"),
                "--overrides",
                "feature_dim=8",
                "--overrides",
                "num_train_videos=2",
                "--overrides",
                "num_test_videos=2",
                "--quiet",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["videos"] == {"test": 2, "validation": 2}
    assert main([str(tmp_path / "cli2"), "--overrides", "core_fraction=2"]) == 2
    assert "core_fraction" in capsys.readouterr().err


def test_snippet_truth_replays_the_generator(tmp_path):
    s = BenchmarkSettings(feature_dim=256, num_train_videos=2, num_test_videos=2, noise_std=0.5, seed=9)
    generate_benchmark(tmp_path, s, progress=False)
    from studies.completeness import snippet_truth

    truth = snippet_truth(tmp_path)
    store = FeatureStore(tmp_path / "features")
    protos = make_prototypes(s, 20, np.random.default_rng([s.seed, 2]))
    assert sorted(truth) == sorted(store)
    for vid, (core, _extent) in truth.items():
        x = store[vid]
        assert len(core) == x.shape[0]
        m = core >= 0
        assert m.any()
        # each core snippet projects ~core_strength onto its own class's core prototype
        proj = np.einsum("td,td->t", x[m], protos.core[core[m]])
        assert np.all(np.abs(proj - s.core_strength) < 0.8)


def _core_detector_checkpoint(path, settings: BenchmarkSettings, classes: list[str]) -> None:
    """A HAM-Net checkpoint whose attention is sigmoid(4 * sum_c relu(x . core_c - 1.5) - 3).

    Built by hand from the benchmark's own core prototypes, so its attention is known in closed
    form: about 0.95 on core snippets (they project ~core_strength = 3 onto their class's core
    prototype) and sigmoid(-3) = 0.047 elsewhere.
    """
    import torch

    from hamnet.config import ModelConfig
    from hamnet.model import build_hamnet
    from hamnet.train import CHECKPOINT_FORMAT

    C, D = len(classes), settings.feature_dim
    protos = make_prototypes(settings, C, np.random.default_rng([settings.seed, 2]))
    cfg = ModelConfig(feature_dim=D, hidden_dim=8, attention_hidden=C, leaky_slope=0.0, dropout=0.0)
    model = build_hamnet(cfg, C)
    conv1, _, conv2, _, conv3, _ = model.attention
    with torch.no_grad():
        for conv in (conv1, conv2, conv3):
            conv.weight.zero_()
        conv1.weight[:, :, 1] = torch.from_numpy(protos.core)  # centre tap only: one snippet at a time
        conv1.bias.fill_(-1.5)
        conv2.weight[:, :, 1] = torch.eye(C)
        conv2.bias.zero_()
        conv3.weight.fill_(4.0)
        conv3.bias.fill_(-3.0)
    state = {"format": CHECKPOINT_FORMAT, "classes": classes, "config": {"model": cfg.to_dict()}}
    torch.save({**state, "state_dict": model.state_dict()}, path)


def test_attention_profile_pools_attention_by_snippet_truth(tmp_path):
    from studies.completeness import attention_profile, snippet_truth

    s = BenchmarkSettings(feature_dim=64, num_train_videos=3, num_test_videos=3, seed=4)
    generate_benchmark(tmp_path / "bench", s, progress=False)
    gt = read_ground_truth_json(tmp_path / "bench" / "gt.json")
    _core_detector_checkpoint(tmp_path / "m.pt", s, list(gt["classes"]))
    protos = make_prototypes(s, len(gt["classes"]), np.random.default_rng([s.seed, 2]))
    truth = snippet_truth(tmp_path / "bench")
    store = FeatureStore(tmp_path / "bench" / "features")

    profiles = {}
    for subset in ("validation", "test"):
        prof = attention_profile(tmp_path / "m.pt", tmp_path / "bench", subset=subset)
        # The same numbers from the closed form, pooled over every snippet of the subset's videos.
        att, core, extent = [], [], []
        for vid, e in gt["database"].items():
            if e["subset"] == subset:
                x = store[vid].astype(np.float64)
                att.append(1 / (1 + np.exp(-(4 * np.maximum(x @ protos.core.T - 1.5, 0).sum(1) - 3))))
                core.append(truth[vid][0])
                extent.append(truth[vid][1])
        a, c, x = np.concatenate(att), np.concatenate(core), np.concatenate(extent)
        expected = {"core": a[c >= 0].mean(), "extent": a[x >= 0].mean(), "background": a[(c < 0) & (x < 0)].mean()}
        assert prof == pytest.approx(expected, abs=1e-5), subset
        profiles[subset] = prof
    assert profiles["validation"] != profiles["test"]  # each subset's own videos
    # What the numbers mean: this model attends to cores only, so the profile says so.
    for prof in profiles.values():
        assert prof["core"] > 0.8 and prof["extent"] < 0.15 and prof["background"] < 0.15, prof

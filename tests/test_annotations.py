"""Annotation readers on the real public files (counts asserted) and the W-TALC features importer."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from core.activitynet import AnnotationError, read_ground_truth_json, video_labels
from storage.annotations import (
    count_segments,
    read_activitynet_json,
    read_thumos14_annotations,
    read_thumos14_meta,
    read_wtalc_annotations,
    select_subset,
    write_ground_truth_json,
)
from storage.featstore import FeatureStore, read_features
from storage.wtalc import WtalcImportError, import_wtalc_features

CMCS = "thumos14/cmcs"
WTALC = "thumos14/wtalc/Thumos14reduced-Annotations"
ANET_JSON = "activitynet12/cmcs/activity_net.v1-2.min-missing-removed.json"
ANET_3C = "activitynet12/3c-net/ActivityNet1.2-Annotations"


@pytest.fixture(scope="module")
def thumos_test(shared_data):
    return read_thumos14_annotations(
        shared_data / CMCS / "thumos14-test-annotations",
        meta_mat=shared_data / CMCS / "thumos14-test-meta.mat",
        include_ambiguous=True,
    )


def test_thumos14_test_counts(shared_data, thumos_test):
    gt = thumos_test
    assert len(gt["database"]) == 213
    assert count_segments(gt) - count_segments(gt, label="Ambiguous") == 3358
    assert count_segments(gt, label="Ambiguous") == 99
    assert len(gt["classes"]) == 20 and gt["classes"][0] == "BaseballPitch"
    assert {e["subset"] for e in gt["database"].values()} == {"test"}
    # video 1292 has only Ambiguous intervals
    assert {a["label"] for a in gt["database"]["video_test_0001292"]["annotations"]} == {"Ambiguous"}
    # durations come from the official meta file
    meta = read_thumos14_meta(shared_data / CMCS / "thumos14-test-meta.mat")
    assert len(meta) == 1574
    assert all(e["duration"] == meta[v]["duration"] for v, e in gt["database"].items())
    # Ambiguous excluded by default; the video stays, with no annotations
    plain = read_thumos14_annotations(shared_data / CMCS / "thumos14-test-annotations")
    assert count_segments(plain) == 3358 and len(plain["database"]) == 213
    assert plain["database"]["video_test_0001292"]["annotations"] == []
    assert plain["database"]["video_test_0000004"]["duration"] is None


def test_thumos14_cliffdiving_also_listed_as_diving(thumos_test):
    def spans(lab):
        return Counter(
            (v, tuple(a["segment"]))
            for v, e in thumos_test["database"].items()
            for a in e["annotations"]
            if a["label"] == lab
        )

    cliff, diving = spans("CliffDiving"), spans("Diving")
    assert sum(cliff.values()) > 100
    assert not (cliff - diving), "every CliffDiving instance is also a Diving instance (official files)"


def test_thumos14_validation_counts(shared_data):
    gt = read_thumos14_annotations(
        shared_data / CMCS / "thumos14-val-annotations",
        meta_mat=shared_data / CMCS / "thumos14-val-meta.mat",
        include_ambiguous=True,
    )
    assert len(gt["database"]) == 200
    assert count_segments(gt, label="Ambiguous") == 89
    assert count_segments(gt) - 89 == 3007
    assert {e["subset"] for e in gt["database"].values()} == {"validation"}


def test_wtalc_reduced_counts_and_agreement_with_official(shared_data, thumos_test):
    gt = read_wtalc_annotations(shared_data / WTALC)
    assert len(gt["database"]) == 412 and count_segments(gt) == 6365
    assert Counter(e["subset"] for e in gt["database"].values()) == {"validation": 200, "test": 212}
    assert count_segments(gt, subset="test") == 3358 and count_segments(gt, subset="validation") == 3007
    assert gt["order"][0] == "video_validation_0000051"
    assert "video_test_0001292" not in gt["database"]
    assert len(gt["classes"]) == 20
    # same instances and durations as the official test files, video by video
    for vid, e in gt["database"].items():
        if e["subset"] != "test":
            continue
        off = thumos_test["database"][vid]
        ours = sorted((a["label"], *a["segment"]) for a in e["annotations"])
        theirs = sorted((a["label"], *a["segment"]) for a in off["annotations"] if a["label"] != "Ambiguous")
        assert [o[0] for o in ours] == [t[0] for t in theirs], vid
        assert np.allclose([o[1:] for o in ours], [t[1:] for t in theirs], atol=1e-6), vid
        assert e["duration"] == pytest.approx(off["duration"], abs=1e-3)


def test_activitynet12_validation_from_cmcs_json(shared_data):
    gt = read_activitynet_json(shared_data / ANET_JSON)
    assert len(gt["database"]) == 8907
    assert Counter(e["subset"] for e in gt["database"].values()) == {
        "training": 4441,
        "validation": 2198,
        "testing": 2268,
    }
    assert count_segments(gt, subset="validation") == 3281
    assert len(gt["classes"]) == 100
    val = read_activitynet_json(shared_data / ANET_JSON, subsets=["validation"])
    assert len(val["database"]) == 2198
    assert all(isinstance(a["segment"][0], float) for e in val["database"].values() for a in e["annotations"])


def test_activitynet12_from_3cnet_npy(shared_data):
    gt = read_wtalc_annotations(shared_data / ANET_3C, video_ids="youtube")
    assert len(gt["database"]) == 7202 and count_segments(gt) == 10733
    assert Counter(e["subset"] for e in gt["database"].values()) == {"training": 4819, "validation": 2383}
    assert len(gt["classes"]) == 100
    by_name = read_wtalc_annotations(shared_data / ANET_3C)
    assert "video_4" in by_name["database"]
    # The CMCS JSON removed unavailable videos; every one it kept is in the 3C-Net files, same subset.
    cmcs = read_activitynet_json(shared_data / ANET_JSON, subsets=["validation", "training"])
    common = set(cmcs["database"]) & set(gt["database"])
    assert len(common) == len(cmcs["database"])
    assert all(cmcs["database"][v]["subset"] == gt["database"][v]["subset"] for v in common)
    assert set(gt["classes"]) == set(cmcs["classes"])


def test_thumos_errors_name_the_file(tmp_path, shared_data):
    src = shared_data / CMCS / "thumos14-test-annotations"
    d = tmp_path / "ann"
    d.mkdir()
    for p in src.iterdir():
        (d / p.name).write_bytes(p.read_bytes())
    with open(d / "Billiards_test.txt", "a") as fh:
        fh.write("video_test_0000999 12.0\n")
    with pytest.raises(AnnotationError, match=r"Billiards_test.txt:\d+: expected 'video start end'"):
        read_thumos14_annotations(d)
    (d / "Billiards_test.txt").unlink()
    with pytest.raises(AnnotationError, match="missing annotation file.*Billiards_test.txt"):
        read_thumos14_annotations(d)
    with pytest.raises(AnnotationError, match="not found"):
        read_thumos14_annotations(tmp_path / "nope")


def test_ground_truth_round_trip_and_helpers(tmp_path, thumos_test):
    p = write_ground_truth_json(tmp_path / "gt.json", thumos_test)
    back = read_ground_truth_json(p)
    assert back["database"] == json.loads(json.dumps(thumos_test["database"]))
    assert not list(tmp_path.glob(".*partial"))
    labels = video_labels(back)
    assert "Ambiguous" not in {c for ls in labels.values() for c in ls}
    assert labels["video_test_0001292"] == []
    with pytest.raises(AnnotationError, match="no videos in subset 'validation'"):
        select_subset(back, "validation")
    (tmp_path / "bad.json").write_text('{"database": {"v": {"subset": "test"}}}')
    with pytest.raises(AnnotationError, match="bad.json.*missing 'annotations'"):
        read_ground_truth_json(tmp_path / "bad.json")


def _fake_wtalc(tmp_path: Path, n: int = 3, dim: int = 8) -> tuple[Path, Path, list[np.ndarray]]:
    ann = tmp_path / "ann"
    ann.mkdir()
    names = np.array([f"video_validation_{i:07d}".encode() for i in range(n)])
    np.save(ann / "videoname.npy", names)
    np.save(ann / "subset.npy", np.array([b"validation"] * n))
    np.save(ann / "classlist.npy", np.array([b"A", b"B"]))
    segs = np.empty(n, dtype=object)
    labs = np.empty(n, dtype=object)
    for i in range(n):
        segs[i] = [[1.0, 2.5], [4.0, 6.0]]
        labs[i] = ["A", "B" if i % 2 else "A"]
    np.save(ann / "segments.npy", segs, allow_pickle=True)
    np.save(ann / "labels.npy", labs, allow_pickle=True)
    np.save(ann / "duration.npy", np.array([[10.0 + i] for i in range(n)]))
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((int((10.0 + i) * 25 / 16), 2 * dim)).astype(np.float32) for i in range(n)]
    arr = np.empty(n, dtype=object)
    for i, f in enumerate(feats):
        arr[i] = f
    np.save(tmp_path / "features.npy", arr, allow_pickle=True)
    return tmp_path / "features.npy", ann, feats


def test_wtalc_features_import(tmp_path):
    fpath, ann, feats = _fake_wtalc(tmp_path)
    out = import_wtalc_features(fpath, ann, tmp_path / "store", progress=False)
    assert list(out) == [f"video_validation_{i:07d}" for i in range(3)]
    for i, path in enumerate(out.values()):
        rec = read_features(path)
        assert np.array_equal(rec.rgb, feats[i][:, :8]) and np.array_equal(rec.flow, feats[i][:, 8:])
        assert np.array_equal(rec.joint(), feats[i])
        assert rec.attrs["fps"] == 25.0 and rec.attrs["frames_per_snippet"] == 16
        assert rec.attrs["duration"] == 10.0 + i and rec.attrs["random_backbone"] is False
        assert rec.settings["source"] == "wtalc-features" and rec.settings["row"] == i
        assert str(fpath) in rec.attrs["source"]
    assert len(FeatureStore(tmp_path / "store")) == 3
    # resuming keeps existing files untouched
    mtime = out["video_validation_0000000"].stat().st_mtime_ns
    import_wtalc_features(fpath, ann, tmp_path / "store", progress=False)
    assert out["video_validation_0000000"].stat().st_mtime_ns == mtime


def test_wtalc_features_import_errors(tmp_path):
    fpath, ann, _ = _fake_wtalc(tmp_path)
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = np.zeros((4, 16), np.float32), np.zeros((4, 16), np.float32)
    np.save(tmp_path / "short.npy", arr, allow_pickle=True)
    with pytest.raises(WtalcImportError, match="short.npy: holds 2 videos but .*lists 3"):
        import_wtalc_features(tmp_path / "short.npy", ann, tmp_path / "s", progress=False)
    arr = np.empty(3, dtype=object)
    for i in range(3):
        arr[i] = np.zeros((4, 15), np.float32)
    np.save(tmp_path / "odd.npy", arr, allow_pickle=True)
    with pytest.raises(WtalcImportError, match=r"odd.npy: video 0 .*shape \(4, 15\)"):
        import_wtalc_features(tmp_path / "odd.npy", ann, tmp_path / "s2", progress=False)

"""Export to the W-TALC, OpenTAD/ActionFormer and video_features layouts (storage/export.py, cli/export.py).

A synthetic store with planted actions (tests/hamnet_synth.py): 8 training videos with
video-level labels only, 4 test videos with temporal ground truth (one Ambiguous interval).
"""

from __future__ import annotations

import json
import pickletools
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from numpy.lib import format as npformat

from cli.export import main as export_main
from core.activitynet import validate_ground_truth
from hamnet.config import LocalizeConfig, LossConfig, ModelConfig, TrainConfig
from hamnet.localize import localize_videos
from hamnet.train import train_hamnet
from storage.annotations import read_activitynet_json, read_wtalc_annotations
from storage.export import ExportError, export_store, plan_export, wtalc_paths
from storage.featstore import FeatureStore, feature_path, read_features, write_features
from storage.labels import write_labels_csv
from storage.safe_pickle import safe_load_npy
from storage.wtalc import import_wtalc_features
from tests.hamnet_synth import SPS, planted_dataset

D = 8  # per stream; joint width 16
TINY = ModelConfig(feature_dim=2 * D, hidden_dim=16, attention_hidden=8, dropout=0.5)
TCFG = TrainConfig(lr=1e-3, batch_size=4, epochs=3, num_snippets=24, seed=3, device="cpu")
LCFG = LocalizeConfig(class_threshold=0.1)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _write_store(root: Path, feats: dict[str, np.ndarray], *, fps: float = 25.0) -> Path:
    for vid, x in feats.items():
        T = x.shape[0]
        write_features(
            feature_path(root, vid),
            x[:, :D],
            x[:, D:],
            video_id=vid,
            fps=fps,
            frames_per_snippet=16,
            n_frames=T * 16 - 5,
            duration=(T * 16 - 5) / fps,
            source=f"{vid}.mp4",
        )
    return root


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    kw = dict(num_classes=3, feature_dim=2 * D, t_range=(20, 45), seg_range=(4, 8))
    ftr, ltr, classes, _, protos = planted_dataset(8, seed=0, prefix="trn", **kw)
    fte, _, _, gt, _ = planted_dataset(4, seed=1, prefix="tst", subset="test", prototypes=protos, **kw)
    # THUMOS-style Ambiguous interval: kept apart from the classes
    gt["database"]["tst001"]["annotations"].append({"segment": [0.0, 1.28], "label": "Ambiguous"})
    store = _write_store(root / "store", {**ftr, **fte})
    return {"root": root, "store": store, "labels": ltr, "gt": gt, "classes": classes, "feats": {**ftr, **fte}}


def _export(synth, out: Path, **kw):
    plan = plan_export(
        synth["store"], labels=synth["labels"], ground_truth=synth["gt"], train_subset="validation", **kw
    )
    return export_store(plan, out, name="Synth", progress=False, tiou_thresholds=[0.1, 0.5])


@pytest.fixture(scope="module")
def exported(synth):
    out = synth["root"] / "export"
    return out, _export(synth, out)


def _train_and_localize(store_dir: Path, labels, classes, test_ids, ckpt: Path):
    train_hamnet(
        FeatureStore(store_dir, sorted(labels)),
        labels,
        classes,
        model_cfg=TINY,
        loss_cfg=LossConfig(),
        train_cfg=TCFG,
        checkpoint_path=ckpt,
        progress=False,
    )
    test = FeatureStore(store_dir, sorted(test_ids))
    sps = {v: test.record(v).seconds_per_snippet for v in test}
    return localize_videos(ckpt, test, LCFG, seconds_per_snippet=sps, progress=False, device="cpu")


def test_round_trip_through_the_importer_trains_and_localizes_bit_identically(synth, exported, tmp_path):
    out, manifest = exported
    assert manifest["subsets"] == {"test": 4, "validation": 8} and manifest["classes"] == synth["classes"]
    feats_npy, ann_dir = wtalc_paths(out / "wtalc", "Synth")
    imported = import_wtalc_features(feats_npy, ann_dir, tmp_path / "imported", progress=False)
    assert sorted(imported) == sorted(synth["feats"])
    for vid, x in synth["feats"].items():
        assert np.array_equal(read_features(imported[vid]).joint(), x)

    ann = read_wtalc_annotations(ann_dir)
    labels = {v: ann["video_labels"][v] for v, e in ann["database"].items() if e["subset"] == "validation"}
    assert labels == synth["labels"] and ann["classes"] == synth["classes"]
    test_ids = [v for v, e in ann["database"].items() if e["subset"] == "test"]
    for v in test_ids:  # segments come back exactly (Python floats in the pickle)
        want = [a for a in synth["gt"]["database"][v]["annotations"] if a["label"] != "Ambiguous"]
        key = lambda a: (a["segment"][0], a["label"])  # noqa: E731
        assert sorted(ann["database"][v]["annotations"], key=key) == sorted(want, key=key)

    a = _train_and_localize(synth["store"], synth["labels"], synth["classes"], test_ids, tmp_path / "a.pt")
    b = _train_and_localize(tmp_path / "imported", labels, ann["classes"], test_ids, tmp_path / "b.pt")
    wa = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    wb = torch.load(tmp_path / "b.pt", weights_only=True)["state_dict"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert sum(len(loc.segments) for loc in a.values()) > 0
    for v in test_ids:
        assert a[v].segments == b[v].segments
        assert np.array_equal(a[v].attention, b[v].attention) and np.array_equal(a[v].cas, b[v].cas)


def _wtalc_loader(root: Path, name: str):
    """A reader written from the format description alone (docs/export.md), in the manner of
    the authors' loaders: np.load with allow_pickle, bytes names decoded, classlist sorted."""
    feats = np.load(root / f"{name}-I3D-JOINTFeatures.npy", encoding="bytes", allow_pickle=True)
    a = root / f"{name}-Annotations"

    def load(n):
        return np.load(a / f"{n}.npy", allow_pickle=True)

    names = [v.decode("utf-8") for v in load("videoname")]
    subset = [s.decode("utf-8") for s in load("subset")]
    classlist = sorted(c.decode() for c in load("classlist"))
    index = {c: i for i, c in enumerate(classlist)}
    labels_all, segments, labels, duration = (load(n) for n in ("labels_all", "segments", "labels", "duration"))
    videos = {}
    for i, vid in enumerate(names):
        multihot = np.zeros(len(classlist), np.float32)
        multihot[[index[c] for c in labels_all[i]]] = 1
        videos[vid] = {
            "features": feats[i],
            "subset": subset[i],
            "multihot": multihot,
            "segments": [list(map(float, s)) for s in segments[i]],
            "segment_labels": [index[c] for c in labels[i]],
            "duration": float(duration[i][0]),
        }
    ambiguous = [line.rstrip("\n").split(" ") for line in open(a / "Ambiguous_test.txt")]
    return videos, classlist, ambiguous


def test_wtalc_files_read_by_a_loader_written_from_the_format(synth, exported):
    out, _ = exported
    videos, classlist, ambiguous = _wtalc_loader(out / "wtalc", "Synth")
    assert classlist == synth["classes"] and sorted(videos) == sorted(synth["feats"])
    for vid, v in videos.items():
        x = synth["feats"][vid]
        assert v["features"].dtype == np.float32 and np.array_equal(v["features"], x)
        T = x.shape[0]
        assert v["duration"] == (T * 16 - 5) / 25.0
        if vid in synth["labels"]:
            assert v["subset"] == "validation" and v["segments"] == []
            assert [classlist[i] for i in np.flatnonzero(v["multihot"])] == synth["labels"][vid]
        else:
            gt = [a for a in synth["gt"]["database"][vid]["annotations"] if a["label"] != "Ambiguous"]
            assert v["subset"] == "test" and len(v["segments"]) == len(gt) > 0
            for (s, e), c in zip(v["segments"], v["segment_labels"]):
                # the authors' frame rule int(t * 25 / 16) lands on the planted snippets
                assert 0 <= int(s * 25 / 16) <= int(e * 25 / 16) <= T
                assert any(a["segment"] == [s, e] and a["label"] == classlist[c] for a in gt)
    assert ambiguous == [["tst001", "", "0.0", "1.28"]]  # a[0] name, a[2] start, a[3] end
    # every file is also accepted by the restricted unpickler, with the same content
    for p in sorted((out / "wtalc").rglob("*.npy")):
        safe, plain = safe_load_npy(p), np.load(p, allow_pickle=True)
        assert safe.shape == plain.shape and safe.dtype == plain.dtype, p
        if plain.dtype != object:
            assert np.array_equal(safe, plain), p
    feats = safe_load_npy(wtalc_paths(out / "wtalc", "Synth")[0])
    assert feats.dtype == object and feats.ndim == 1 and len(feats) == 12
    # NumPy 1.x can load them too: the pickles name numpy.core, never NumPy 2's numpy._core
    for p in [wtalc_paths(out / "wtalc", "Synth")[0], *(out / "wtalc" / "Synth-Annotations").glob("*.npy")]:
        with open(p, "rb") as fh:
            npformat.read_magic(fh)
            _, _, dtype = npformat.read_array_header_1_0(fh)
            if dtype.hasobject:
                names = {arg for op, arg, _ in pickletools.genops(fh) if "GLOBAL" in op.name}
                assert names <= {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}, (p, names)


def test_per_video_npy_and_activitynet_json(synth, exported):
    out, manifest = exported
    for vid, x in synth["feats"].items():
        a = np.load(out / "opentad" / "features" / f"{vid}.npy")
        assert a.dtype == np.float32 and a.shape == (x.shape[0], 2 * D) and np.array_equal(a, x)
        rgb = np.load(out / "video_features" / f"{vid}_rgb.npy")
        flow = np.load(out / "video_features" / f"{vid}_flow.npy")
        assert rgb.dtype == flow.dtype == np.float32 and rgb.shape == flow.shape == (x.shape[0], D)
        assert np.array_equal(np.concatenate([rgb, flow], 1), x)

    ann_path = out / "opentad" / "annotations" / "Synth_anno.json"
    raw = json.loads(ann_path.read_text())
    validate_ground_truth(raw, source=str(ann_path))
    assert read_activitynet_json(ann_path)["classes"] == synth["classes"]
    categories = (out / "opentad" / "annotations" / "category_idx.txt").read_text().splitlines()
    assert categories == synth["classes"]
    assert set(raw["database"]) == set(synth["feats"])
    for vid, e in raw["database"].items():
        assert isinstance(e["subset"], str) and e["duration"] > 0 and isinstance(e["frame"], int)
        assert e["fps"] == 25.0 and e["frame"] / e["duration"] == pytest.approx(25.0)
        for a in e["annotations"]:
            s, t = a["segment"]
            assert 0 <= s <= t <= e["duration"] + SPS and categories[a["label_id"]] == a["label"]
            # OpenTAD's THUMOS rule: frames = t / duration * frame, grid = (frames - offset) / stride;
            # planted segments start on snippet boundaries, whose centres are at grid k + 0.5
            grid = (s / e["duration"] * e["frame"] - 8) / 16
            assert grid + 0.5 == pytest.approx(round(grid + 0.5), abs=1e-6)
        if vid in synth["labels"]:
            assert e["annotations"] == [] and e["subset"] == "validation"
    assert "Ambiguous" not in {a["label"] for e in raw["database"].values() for a in e["annotations"]}
    assert (out / "opentad" / "features" / "missing_files.txt").read_text() == ""

    snippet: dict = {}
    exec((out / "opentad" / "opentad_dataset.py").read_text(), snippet)
    assert snippet["feature_stride"] == 16 and snippet["offset_frames"] == 8 and snippet["in_channels"] == 2 * D
    assert snippet["train_subset_name"] == "validation" and snippet["test_subset_name"] == "test"
    assert snippet["evaluation"]["tiou_thresholds"] == [0.1, 0.5]
    for key in ("annotation_path", "class_map", "data_path", "block_list"):
        assert (out / "opentad" / snippet[key]).exists(), key
    af = yaml.safe_load((out / "opentad" / "actionformer_dataset.yaml").read_text())
    assert af["train_split"] == ["validation"] and af["val_split"] == ["test"]
    assert af["dataset"]["input_dim"] == 2 * D and af["dataset"]["feat_stride"] == 16
    assert (out / "opentad" / af["dataset"]["json_file"]).is_file()
    assert manifest["files"] == sorted(
        str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "export.json"
    )


def test_errors_are_found_before_anything_is_written(synth, tmp_path):
    store = tmp_path / "store"
    feats = dict(list(synth["feats"].items())[:3])
    _write_store(store, feats)
    odd = np.abs(np.random.default_rng(0).normal(size=(10, 2 * D + 4))).astype(np.float32)
    write_features(
        feature_path(store, "wide"), odd[:, : D + 2], odd[:, D + 2 :], video_id="wide", fps=25.0,
        frames_per_snippet=16, n_frames=160, duration=6.4, source="wide.mp4",
    )  # fmt: skip
    labels = {v: ["action0"] for v in [*feats, "wide"]}
    with pytest.raises(ExportError, match=r"mixed RGB feature widths.*\b10\b.*'wide'"):
        plan_export(store, labels=labels)
    feature_path(store, "wide").unlink()
    del labels["wide"]

    # videos with neither labels nor ground truth: named, and nothing written
    with pytest.raises(ExportError, match=r"2 video\(s\) have no labels.*'trn001', 'trn002'"):
        plan_export(store, labels={"trn000": ["action0"]})
    out = tmp_path / "out"
    assert export_main(["--features", str(store), "--output", str(out), "--quiet"]) == 2
    one = write_labels_csv(tmp_path / "one.csv", {"trn000.mp4": ["action0"]})
    assert export_main(["--features", str(store), "--output", str(out), "--labels", str(one), "--quiet"]) == 2
    assert not out.exists()
    # ... unless they are put in a subset on purpose
    plan = plan_export(store, labels={"trn000": ["action0"]}, unlabelled_subset="test")
    assert [(v.subset, v.labels) for v in plan.videos] == [("training", ["action0"]), ("test", []), ("test", [])]

    # a labelled video without features is reported, not dropped silently
    plan = plan_export(store, labels={**labels, "gone.mp4": ["action1"]})
    assert plan.missing_features == ["gone.mp4"] and any("gone.mp4" in w for w in plan.warnings)

    # the W-TALC layout has no field for another frame rate
    other = _write_store(tmp_path / "fps30", feats, fps=30.0)
    with pytest.raises(ExportError, match="16-frame snippets at 30 fps"):
        export_store(plan_export(other, labels=labels), tmp_path / "o30", formats=["wtalc"], progress=False)
    assert not (tmp_path / "o30").exists()
    export_store(plan_export(other, labels=labels), tmp_path / "o30", formats=["opentad"], progress=False)

    # an occupied folder that is not an export is refused
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("user data")
    with pytest.raises(ExportError, match="not empty and holds no previous export"):
        export_store(plan_export(store, labels=labels), busy, progress=False)
    assert sorted(p.name for p in busy.iterdir()) == ["mine.txt"]


def test_reexport_replaces_a_previous_export_and_its_stale_files(synth, tmp_path):
    store = _write_store(tmp_path / "store", dict(list(synth["feats"].items())[:3]))
    labels = {v: ["action0"] for v in ("trn000", "trn001", "trn002")}
    out = tmp_path / "out"
    export_store(plan_export(store, labels=labels), out, progress=False)
    assert (out / "opentad" / "features" / "trn002.npy").is_file()
    feature_path(store, "trn002").unlink()
    m = export_store(plan_export(store, labels=labels), out, progress=False)
    assert not (out / "opentad" / "features" / "trn002.npy").exists()
    assert not (out / "video_features" / "trn002_rgb.npy").exists()
    assert m["videos"] == 2 and m["missing_features"] == ["trn002"]
    assert not list(out.rglob("*.partial"))

    # an interrupted export (a feature file turned unreadable after planning) leaves no
    # manifest, and can be rerun into the same folder
    plan = plan_export(store, labels=labels)
    good = feature_path(store, "trn001").read_bytes()
    feature_path(store, "trn001").write_bytes(b"garbage")
    with pytest.raises(ExportError, match=r"trn001.h5: not a readable HDF5"):
        export_store(plan, out, progress=False)
    assert not (out / "export.json").exists() and (out / "opentad" / "features" / "trn000.npy").is_file()
    feature_path(store, "trn001").write_bytes(good)
    assert export_store(plan, out, progress=False)["videos"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "opentad", "video_features", "wtalc"]


def test_command_line(synth, tmp_path, capsys):
    labels = write_labels_csv(tmp_path / "labels.csv", {f"{v}.mp4": ls for v, ls in synth["labels"].items()})
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(synth["gt"]))
    out = tmp_path / "out"
    args = ["--features", str(synth["store"]), "--output", str(out), "--labels", str(labels)]
    args += ["--ground-truth", str(gt), "--name", "Thumos14like", "--formats", "wtalc", "--quiet"]
    assert export_main([*args, "--overrides", "evaluate.tiou_thresholds=[0.5]"]) == 0
    printed = capsys.readouterr().out
    assert "exported 12 videos (test: 4, validation: 8), 3 classes, 8+8 dims as wtalc" in printed
    manifest = json.loads((out / "export.json").read_text())
    # 'thumos' in the name: labelled videos go to 'validation', the subset HAM-Net's loader trains on
    assert manifest["train_subset"] == "validation" and not (out / "opentad").exists()
    assert (out / "wtalc" / "Thumos14like-I3D-JOINTFeatures.npy").is_file()
    assert export_main([*args, "--overrides", "train.epoch=3"]) == 2
    assert "unknown setting 'train.epoch'" in capsys.readouterr().err


def test_public_thumos14reduced_annotations_are_rewritten_as_published(shared_data, tmp_path):
    """The real W-TALC annotation folder -> a store of stand-in features -> export: every
    video's subset, duration, segments, labels and Ambiguous intervals come out as published."""
    src = shared_data / "thumos14" / "wtalc" / "Thumos14reduced-Annotations"
    ann = read_wtalc_annotations(src)
    store = tmp_path / "store"
    for vid, e in ann["database"].items():
        T = max(1, int(e["duration"] * 25 / 16))
        x = np.zeros((T, 2), np.float32)
        write_features(
            feature_path(store, vid), x[:, :1], x[:, 1:], video_id=vid, fps=25.0, frames_per_snippet=16,
            n_frames=int(round(e["duration"] * 25)), duration=e["duration"], source=vid,
        )  # fmt: skip
    amb_lines = (src / "Ambiguous_test.txt").read_text().splitlines()
    gt = {"database": {v: {**e, "annotations": list(e["annotations"])} for v, e in ann["database"].items()}}
    for line in amb_lines:
        vid, _, s, t = line.split(" ")
        if vid in gt["database"]:
            gt["database"][vid]["annotations"].append({"segment": [float(s), float(t)], "label": "Ambiguous"})
    plan = plan_export(store, labels=ann["video_labels"], ground_truth=gt, train_subset="validation")
    export_store(plan, tmp_path / "out", formats=["wtalc"], name="Thumos14reduced", progress=False)

    videos, classlist, _ = _wtalc_loader(tmp_path / "out" / "wtalc", "Thumos14reduced")
    assert classlist == ann["classes"] and set(videos) == set(ann["database"])
    for vid, e in ann["database"].items():
        v = videos[vid]
        assert v["subset"] == e["subset"] and v["duration"] == e["duration"]
        assert sorted(classlist[i] for i in np.flatnonzero(v["multihot"])) == sorted(set(ann["video_labels"][vid]))
        ours = sorted((*s, classlist[c]) for s, c in zip(v["segments"], v["segment_labels"]))
        assert ours == sorted((*a["segment"], a["label"]) for a in e["annotations"]), vid
    exported = (tmp_path / "out" / "wtalc" / "Thumos14reduced-Annotations" / "Ambiguous_test.txt").read_text()
    kept = [line for line in amb_lines if line.split(" ")[0] in ann["database"]]
    assert sorted(exported.splitlines()) == sorted(kept) and len(kept) > 50

"""The ExportFeatures task and ``RunAll --export``: off by default, reruns only for features or labels.

The fast test stands in for extraction: it writes a synthetic feature store and the feature
index where FeatureIndex would, so Luigi sees extraction as done. The slow one runs the whole
graph on the tiny synthetic videos of tests/test_tasks.py.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import luigi
import numpy as np
import pytest

import tasks
from storage.featstore import FeatureStore, feature_path, write_features
from storage.labels import read_labels_csv, write_labels_csv
from storage.safe_pickle import safe_load_npy
from tests.hamnet_synth import planted_dataset
from tests.test_tasks import RAN, build, params, tiny_dataset


def _fake_extracted_run(tmp_path: Path) -> dict[str, str]:
    """Videos (never decoded), labels, ground truth, a store and the index FeatureIndex would write."""
    feats, labels, _, gt, _ = planted_dataset(6, num_classes=2, feature_dim=16, t_range=(20, 30), seg_range=(3, 5))
    videos, store = tmp_path / "videos", tmp_path / "store"
    videos.mkdir()
    test = ["vid004", "vid005"]
    for vid in feats:
        (videos / f"{vid}.mp4").write_bytes(b"not decoded in this test")
    (videos / "broken.mp4").write_bytes(b"")
    for vid in [v for v in feats if v != "vid003"]:  # vid003: labelled, but its extraction "failed"
        x = feats[vid]
        write_features(
            feature_path(store, vid), x[:, :8], x[:, 8:], video_id=vid, fps=25.0, frames_per_snippet=16,
            n_frames=16 * len(x), duration=len(x) * 0.64, source=f"{vid}.mp4",
        )  # fmt: skip
    write_labels_csv(tmp_path / "labels.csv", {f"{v}.mp4": labels[v] for v in feats if v not in test})
    gt["database"] = {v: {**e, "subset": "test"} for v, e in gt["database"].items() if v in test}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    p = dict(
        video_dir=str(videos),
        labels=str(tmp_path / "labels.csv"),
        ground_truth=str(tmp_path / "gt.json"),
        output_dir=str(tmp_path / "out"),
        config="demo",
    )
    ok = [v for v in feats if v != "vid003"]
    index = {
        "feature_dir": str(store),
        "videos": [{"video_id": v, "source": f"{v}.mp4", "status": "ok"} for v in ok]
        + [{"video_id": v, "source": f"{v}.mp4", "status": "failed"} for v in ("vid003", "broken")],
        "skipped": [],
        "random_backbone": False,
    }
    path = Path(tasks.FeatureIndex(**p).output().path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(index))
    return p


def test_export_task_reruns_only_for_features_or_labels(tmp_path):
    p = _fake_extracted_run(tmp_path)
    # RunAll: no export unless asked; asked for after a finished run, RunAll is not complete
    assert "export" not in tasks.RunAll(**p).requires()
    done = Path(tasks.RunAll(**p).output().path)
    done.parent.mkdir(parents=True)
    done.write_text("{}")
    assert tasks.RunAll(**p).complete() and not tasks.RunAll(export=True, **p).complete()

    ran, res = build(tasks.ExportFeatures(**p))
    assert res.status == luigi.LuigiStatusCode.SUCCESS, res.summary_text
    assert ran == Counter({"ExportFeatures": 1}) and tasks.RunAll(export=True, **p).complete()
    root = Path(tasks.ExportFeatures(**p).output().path).parent
    manifest = json.loads((root / "export.json").read_text())
    assert manifest["subsets"] == {"test": 2, "training": 3}
    assert manifest["missing_features"] == ["vid003"] and manifest["formats"] == ["wtalc", "opentad", "video_features"]
    assert sorted(f.name for f in (root / "opentad" / "features").glob("*.npy")) == [
        f"vid00{i}.npy" for i in (0, 1, 2, 4, 5)
    ]

    # nothing changed, or only training / localization settings: same output, nothing runs
    later = {**p, "overrides": "train.epochs=3 localize.class_threshold=0.3"}
    assert tasks.ExportFeatures(**later).output().path == tasks.ExportFeatures(**p).output().path
    ran, _ = build(tasks.ExportFeatures(**later))
    assert ran == Counter()
    # changed labels, or other export options: a new export
    labels = read_labels_csv(p["labels"])
    labels["vid000.mp4"] = ["action1"]
    write_labels_csv(p["labels"], labels)
    ran, _ = build(tasks.ExportFeatures(**p))
    assert ran == Counter({"ExportFeatures": 1})
    ran, _ = build(tasks.ExportFeatures(formats="wtalc", export_name="Thumos14mine", **p))
    assert ran == Counter({"ExportFeatures": 1})
    m = json.loads(Path(RAN[0].output().path).read_text())
    assert m["formats"] == ["wtalc"] and m["train_subset"] == "validation"  # 'thumos' in the name
    assert len(list((tmp_path / "out" / "export").iterdir())) == 3


@pytest.mark.slow
def test_runall_export_is_optional_and_incremental(tmp_path):
    data = tiny_dataset(tmp_path)
    out = tmp_path / "out"
    ran, res = build(tasks.RunAll(**params(data, out)))
    assert res.status == luigi.LuigiStatusCode.SUCCESS, res.summary_text
    assert ran["ExportFeatures"] == 0 and not (out / "export").exists()  # off by default

    # asked for after a finished run: the export alone is written (and RunAll re-marks done)
    ran, res = build(tasks.RunAll(export=True, **params(data, out)))
    assert res.status == luigi.LuigiStatusCode.SUCCESS, res.summary_text
    assert ran == Counter({"ExportFeatures": 1, "RunAll": 1})
    (task,) = [t for t in RAN if t.get_task_family() == "ExportFeatures"]
    root = Path(task.output().path).parent
    manifest = json.loads((root / "export.json").read_text())
    # labelled videos -> the training subset; the ground truth's test video keeps its subset
    assert manifest["subsets"] == {"test": 1, "training": 3} and manifest["random_backbone"] is True
    index = json.loads(next((out / "index").glob("*.json")).read_text())
    store = FeatureStore(index["feature_dir"])
    names = [n.decode() for n in safe_load_npy(root / "wtalc" / "Features-Annotations" / "videoname.npy")]
    feats = safe_load_npy(root / "wtalc" / "Features-I3D-JOINTFeatures.npy")
    assert names == sorted(store.video_ids)
    assert all(np.array_equal(feats[i], store[v]) for i, v in enumerate(names))

    # nothing changed: nothing runs; a localization setting: the export is not redone
    ran, _ = build(tasks.RunAll(export=True, **params(data, out)))
    assert ran == Counter()
    ran, _ = build(tasks.RunAll(export=True, **params(data, out, "localize.class_threshold=0.3")))
    assert ran["Localize"] == 1 and ran["ExportFeatures"] == 0

    # changed labels: the export is redone, into a new folder
    labels = read_labels_csv(data["labels"])
    first = sorted(labels)[0]
    labels[first] = [*labels[first], "extra_class"]
    write_labels_csv(data["labels"], labels)
    ran, _ = build(tasks.RunAll(export=True, **params(data, out, "localize.class_threshold=0.3")))
    assert ran["ExportFeatures"] == 1 and ran["Train"] == 1
    (task,) = [t for t in RAN if t.get_task_family() == "ExportFeatures"]
    assert "extra_class" in json.loads(Path(task.output().path).read_text())["classes"]
    assert not list(out.rglob("*.partial"))

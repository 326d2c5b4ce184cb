"""The ExportFeatures task and ``RunAll --export``: off by default, reruns only for features or labels.

Uses the tiny synthetic videos and settings of tests/test_tasks.py.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import luigi
import numpy as np
from test_tasks import RAN, build, params, tiny_dataset

import tasks
from storage.featstore import FeatureStore
from storage.labels import read_labels_csv, write_labels_csv
from storage.safe_pickle import safe_load_npy


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

"""The Luigi graph with an RGB-only backbone: no flow stage, HAM-Net sized by the backbone,
and the incremental rules (what a changed backbone or flow setting reruns)."""

from __future__ import annotations

from collections import Counter

import luigi
import torch

import tasks
from tests.test_tasks import RAN, build, params, ran_videos, tiny_dataset

AFTER_FEATURES = {"FeatureIndex": 1, "Train": 1, "Localize": 1, "Evaluate": 1, "Report": 1, "RunAll": 1}


def test_rgb_only_backbone_has_no_flow_stage_and_reruns_what_it_should(tmp_path, one_torch_thread):
    data = tiny_dataset(tmp_path)
    out = tmp_path / "out"
    task = tasks.RunAll(**params(data, out, "extract.backbone=x3d_m"))

    # The flow stage is absent from the DAG, not merely skipped at run time.
    def walk(t):
        yield t
        for d in luigi.task.flatten(t.requires()):
            yield from walk(d)

    families = Counter(t.get_task_family() for t in walk(task))
    assert families["FeatureShard"] >= 1 and families["FlowShard"] == 0 and families["FlowCache"] == 0

    ran, res = build(task)
    assert res.status == luigi.LuigiStatusCode.SUCCESS, res.summary_text
    assert len(ran_videos("FeatureShard")) == 4 and ran == Counter(
        {"FeatureShard": ran["FeatureShard"], **AFTER_FEATURES}
    )
    assert not (out / "flow").exists()
    # HAM-Net was built for the backbone's 2048-D rows although the demo config says nothing.
    ckpt = [t for t in RAN if t.get_task_family() == "Train"][0].output().path
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["config"]["model"]["feature_dim"] == 2048
    assert (out / "results.json").is_file()

    # A flow setting does not touch RGB-only features: nothing reruns.
    ran, _ = build(tasks.RunAll(**params(data, out, "extract.backbone=x3d_m extract.tvl1.nscales=3")))
    assert ran == Counter()

    # Another backbone: its features and everything after, still no flow; HAM-Net is 512-D now.
    ran, res = build(tasks.RunAll(**params(data, out, "extract.backbone=r2plus1d_18")))
    assert res.status == luigi.LuigiStatusCode.SUCCESS, res.summary_text
    assert len(ran_videos("FeatureShard")) == 4 and ran == Counter(
        {"FeatureShard": ran["FeatureShard"], **AFTER_FEATURES}
    )
    ckpt = [t for t in RAN if t.get_task_family() == "Train"][0].output().path
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["config"]["model"]["feature_dim"] == 512
    assert not (out / "flow").exists()

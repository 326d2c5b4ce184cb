"""The Luigi graph with an RGB-only backbone: no flow stage, HAM-Net sized by the backbone,
and the incremental rules (what a changed backbone or flow setting reruns)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import luigi
import torch

import tasks
from pipeline.demo import DemoSpec, synthesize_demo

TINY = DemoSpec(
    num_train=3,
    num_test=1,
    num_classes=2,
    min_seconds=4.0,
    max_seconds=5.0,
    min_action_seconds=1.0,
    max_action_seconds=1.2,
    max_instances=1,
    width=40,
    height=32,
    seed=5,
)
TINY_OVERRIDES = (
    "extract.resize_short=32 extract.crop=32 extract.device=cpu "
    "model.hidden_dim=32 model.attention_hidden=16 train.epochs=2 train.batch_size=2 "
    "train.num_snippets=8 train.device=cpu"
)

RAN: list[luigi.Task] = []


@luigi.Task.event_handler(luigi.Event.SUCCESS)
def _count_success(task):
    RAN.append(task)


def build(task: luigi.Task) -> tuple[Counter, luigi.execution_summary.LuigiRunResult]:
    RAN.clear()
    result = luigi.build([task], local_scheduler=True, detailed_summary=True, log_level="WARNING")
    return Counter(t.get_task_family() for t in RAN if isinstance(t, tasks.PipelineTask)), result


def params(data: dict[str, Path], out: Path, overrides: str) -> dict[str, str]:
    return dict(
        video_dir=str(data["videos"]),
        labels=str(data["labels"]),
        ground_truth=str(data["ground_truth"]),
        output_dir=str(out),
        config="demo",
        overrides=f"{TINY_OVERRIDES} {overrides}",
    )


def _videos_extracted() -> int:
    """How many videos the feature shards of the last build extracted (they redo stale ones only)."""
    return sum(len(t.result.ran) for t in RAN if t.get_task_family() == "FeatureShard")


AFTER_FEATURES = {"FeatureIndex": 1, "Train": 1, "Localize": 1, "Evaluate": 1, "Report": 1, "RunAll": 1}


def test_rgb_only_backbone_has_no_flow_stage_and_reruns_what_it_should(tmp_path, one_torch_thread):
    data = synthesize_demo(tmp_path / "data", TINY, progress=False)
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
    assert _videos_extracted() == 4 and ran == Counter({"FeatureShard": ran["FeatureShard"], **AFTER_FEATURES})
    assert not (out / "flow").exists()
    # HAM-Net was built for the backbone's 2048-D rows although the demo config says nothing.
    ckpt = [t for t in RAN if t.get_task_family() == "Train"][0].output().path
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["config"]["model"]["feature_dim"] == 2048
    assert (out / "results.json").is_file()

    # A flow setting does not touch RGB-only features: nothing reruns.
    ran, _ = build(tasks.RunAll(**params(data, out, "extract.backbone=x3d_m extract.tvl1.nscales=2")))
    assert ran == Counter()

    # Another backbone: its features and everything after, still no flow; HAM-Net is 512-D now.
    ran, res = build(tasks.RunAll(**params(data, out, "extract.backbone=r2plus1d_18")))
    assert res.status == luigi.LuigiStatusCode.SUCCESS, res.summary_text
    assert _videos_extracted() == 4 and ran == Counter({"FeatureShard": ran["FeatureShard"], **AFTER_FEATURES})
    ckpt = [t for t in RAN if t.get_task_family() == "Train"][0].output().path
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["config"]["model"]["feature_dim"] == 512
    assert not (out / "flow").exists()

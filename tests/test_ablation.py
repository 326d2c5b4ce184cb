"""The ablation runner on a tiny completeness benchmark: table structure and evaluator numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli.ablation import main
from core.activitynet import read_ground_truth_json
from hamnet.evaluate import evaluate_detection
from storage.annotations import select_subset
from studies.ablation import (
    AblationError,
    AblationSpec,
    collect_table,
    format_markdown,
    load_ablation_spec,
    run_ablation,
)
from studies.completeness import BenchmarkSettings, generate_benchmark

TINY = [
    "model.feature_dim=16",
    "model.hidden_dim=16",
    "model.attention_hidden=8",
    "train.epochs=2",
    "train.num_snippets=24",
    "train.batch_size=4",
    "train.lr=0.001",
    "localize.attention_thresholds=[0.3,0.6]",
]


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    generate_benchmark(
        root, BenchmarkSettings(feature_dim=16, num_train_videos=8, num_test_videos=6, seed=1), progress=False
    )
    return root


def _spec(**kw) -> AblationSpec:
    d = {
        "config": "completeness_cpu",
        "seeds": [0, 1],
        "overrides": TINY,
        "rows": [
            {"name": "MIL only", "group": "Table 1", "overrides": ["loss.weights.hal=0", "loss.weights.ssal=0"]},
            {"name": "full", "group": "Table 1"},
        ],
    }
    d.update(kw)
    return AblationSpec.from_dict(d)


def test_two_rows_two_seeds_table_is_the_evaluators(tiny_bench, tmp_path):
    from hamnet.evaluate import evaluate_detection

    out = tmp_path / "abl"
    logs: list[str] = []
    table = run_ablation(_spec(), tiny_bench / "features", tiny_bench / "gt.json", out, progress=False, log=logs.append)
    saved = json.loads((out / "ablation.json").read_text())
    assert saved == json.loads(json.dumps(table))
    assert [r["name"] for r in table["rows"]] == ["MIL only", "full"]
    assert table["tiou_thresholds"] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    test_gt = select_subset(read_ground_truth_json(tiny_bench / "gt.json"), "test")
    for row in table["rows"]:
        assert row["seeds"] == [0, 1] and len(row["runs"]) == 2
        per_seed = []
        for run in row["runs"]:
            preds = json.loads((tmp_path / run["run_dir"] / "results.json").read_text())
            assert set(preds["results"]) == set(test_gt["database"])
            res = evaluate_detection(test_gt, preds, table["tiou_thresholds"])
            assert np.allclose(res.map, run["map"]) and res.average_map == pytest.approx(run["average_map"])
            per_seed.append(np.asarray(run["map"]) * 100)
        per_seed = np.array(per_seed)
        assert np.allclose(row["map_mean"], per_seed.mean(0))
        assert np.allclose(row["map_std"], per_seed.std(0, ddof=1))
        assert row["average_mean"] == pytest.approx(np.mean([r["average_map"] * 100 for r in row["runs"]]))
    # the two rows really ran different settings
    cfgs = [
        json.loads((tmp_path / r["runs"][0]["run_dir"] / "metrics.json").read_text())["config"] for r in table["rows"]
    ]
    assert cfgs[0]["loss"]["weights"]["hal"] == 0 and cfgs[1]["loss"]["weights"]["hal"] == 0.2
    assert cfgs[0]["model"]["feature_dim"] == 16 and cfgs[0]["train"]["seed"] == 0
    md = (out / "ablation.md").read_text()
    assert md == format_markdown(table)
    assert md.splitlines()[0].startswith("| configuration | group | seeds | mAP@0.1 |") and "AVG (0.1:0.7)" in md
    assert len(logs) >= 4

    # a second run reuses every finished run (nothing retrained)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")}
    again = run_ablation(
        _spec(), tiny_bench / "features", tiny_bench / "gt.json", out, progress=False, log=lambda s: None
    )
    assert again["rows"] == table["rows"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")} == stamps
    # the table can be rebuilt from the finished runs alone; a row whose settings changed has none
    assert collect_table(_spec(), out, write=False)["rows"] == table["rows"]
    changed = _spec(rows=[{"name": "full", "overrides": ["loss.weights.hal=0.3"]}])
    with pytest.raises(AblationError, match="no finished runs"):
        collect_table(changed, out, write=False)


def test_spec_validation_names_the_problem(tmp_path):
    with pytest.raises(AblationError, match="row 'bad'.*loss.weights.hall"):
        _spec(rows=[{"name": "bad", "overrides": ["loss.weights.hall=0"]}])
    with pytest.raises(AblationError, match="must not contain ','"):
        _spec(rows=[{"name": "a, b"}])
    with pytest.raises(AblationError, match="duplicate row name"):
        _spec(rows=[{"name": "a"}, {"name": "a"}])
    with pytest.raises(AblationError, match="unknown key.*'seed'"):
        AblationSpec.from_dict({"config": "thumos14", "rows": [{"name": "a"}], "seed": [1]})
    with pytest.raises(AblationError, match="seeds"):
        _spec(seeds=[])
    with pytest.raises(AblationError, match="unknown row"):
        _spec().select(["nope"])


def test_shipped_ablation_file_is_valid():
    spec = load_ablation_spec("ablation")
    names = [r.name for r in spec.rows]
    assert names[0] == "BCL only" and "random drop" in names and "inverse drop" in names
    bcl = spec.run_config(spec.rows[0], 0)["loss"]["weights"]
    assert bcl["bcl"] > 0 and all(bcl[k] == 0 for k in ("hal", "sal", "ssal", "sparsity", "guide"))
    assert spec.run_config(spec.rows[5], 0)["loss"]["drop_mode"] == "random"
    assert spec.select(seeds=[7]).seeds == (7,)


def test_cli(tiny_bench, tmp_path, capsys):
    spec = tmp_path / "abl.yaml"
    spec.write_text(
        json.dumps(
            {
                "config": "completeness_cpu",
                "seeds": [0],
                "overrides": TINY,
                "rows": [
                    {"name": "full"},
                    {
                        "name": "BCL only",
                        "overrides": [
                            "loss.weights.hal=0",
                            "loss.weights.sal=0",
                            "loss.weights.ssal=0",
                            "loss.weights.sparsity=0",
                            "loss.weights.guide=0",
                        ],
                    },
                ],
            }
        )
    )
    rc = main(
        [
            str(spec),
            "--store",
            str(tiny_bench / "features"),
            "--gt",
            str(tiny_bench / "gt.json"),
            "--out",
            str(tmp_path / "o"),
            "--rows",
            "full",
            "--quiet",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "| full |" in out and "BCL only" not in out
    assert (
        main(
            [
                str(spec),
                "--store",
                str(tiny_bench / "features"),
                "--gt",
                str(tiny_bench / "gt.json"),
                "--out",
                str(tmp_path / "o2"),
                "--overrides",
                "train.epoch=3",
            ]
        )
        == 2
    )
    assert "train.epoch" in capsys.readouterr().err


def _as_wtalc(bench, dest):
    """Export the tiny benchmark as a W-TALC features file + annotation folder."""
    from storage.featstore import FeatureStore

    gt = read_ground_truth_json(bench / "gt.json")
    store = FeatureStore(bench / "features")
    vids = sorted(gt["database"])
    ann = dest / "ann"
    ann.mkdir(parents=True)
    np.save(ann / "videoname.npy", np.array([v.encode() for v in vids]))
    np.save(ann / "subset.npy", np.array([gt["database"][v]["subset"].encode() for v in vids]))
    np.save(ann / "classlist.npy", np.array([c.encode() for c in gt["classes"]]))
    segs, labs, feats = (np.empty(len(vids), dtype=object) for _ in range(3))
    for i, v in enumerate(vids):
        segs[i] = [a["segment"] for a in gt["database"][v]["annotations"]]
        labs[i] = [a["label"] for a in gt["database"][v]["annotations"]]
        feats[i] = store[v]
    np.save(ann / "segments.npy", segs, allow_pickle=True)
    np.save(ann / "labels.npy", labs, allow_pickle=True)
    np.save(ann / "duration.npy", np.array([[gt["database"][v]["duration"]] for v in vids]))
    np.save(dest / "features.npy", feats, allow_pickle=True)
    return dest / "features.npy", ann


def test_reproduce_end_to_end_prints_paper_layout(tiny_bench, tmp_path, capsys):
    from cli.reproduce import main as reproduce_main
    from studies.reproduce import RECIPES

    feats, ann = _as_wtalc(tiny_bench, tmp_path / "wtalc")
    work = tmp_path / "work"
    rc = reproduce_main(
        [
            "thumos14",
            "--features",
            str(feats),
            "--annotations",
            str(ann),
            "--work",
            str(work),
            "--quiet",
            # Two epochs leave every video score near 1/21: keep all classes so the run predicts.
            *sum((["--overrides", o] for o in [*TINY, "localize.class_threshold=0.0"]), []),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert len(list((work / "features").glob("*.h5"))) == 14
    preds = json.loads((work / "results.json").read_text())
    gt = read_ground_truth_json(work / "gt.json")
    assert set(preds["results"]) == set(select_subset(gt, "test")["database"])

    # Recompute the run's metrics from what it wrote, with the evaluator directly.
    tious = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    res = evaluate_detection(gt, preds, tious, mode="activitynet", subset="test")
    assert res.num_videos == 6 and res.num_predictions.sum() > 0
    assert res.average_map > 0  # a row of zeros would match any formatting; this run finds actions
    m = json.loads((work / "metrics.json").read_text())
    assert m["dataset"] == "thumos14" and m["mode"] == "activitynet"
    assert m["mAP"] == pytest.approx({repr(t): float(v) for t, v in zip(tious, res.map)}, abs=1e-12)
    assert m["average_mAP"] == pytest.approx(res.average_map, abs=1e-12)

    # The printed table: header, separator, the paper's row, then this run's row, in percent.
    lines = out.splitlines()
    head = "| method | mAP@0.1 | mAP@0.2 | mAP@0.3 | mAP@0.4 | mAP@0.5 | mAP@0.6 | mAP@0.7 | AVG (0.1:0.7) |"
    assert lines.count(head) == 1, out
    i = lines.index(head)
    ours = " | ".join(f"{100 * v:.1f}" for v in res.map)
    assert lines[i + 1 : i + 4] == [
        "|---|" + "---:|" * 8,
        "| HAM-Net (paper) | 65.4 | 59.0 | 50.3 | 41.1 | 31.0 | 20.7 | 11.1 | 39.8 |",
        f"| this run (activitynet evaluator) | {ours} | {100 * res.average_map:.1f} |",
    ], out
    assert m["table_markdown"] == "\n".join(lines[i : i + 4]) + "\n"  # the file holds the same table
    assert RECIPES["activitynet12"].paper.average == 25.1

"""Ablation runner: train and evaluate named configurations on one feature store, one table.

An ablation file (``configs/ablation.yaml``) names a dataset config the rows start from, the
train/test subsets, the seeds, overrides common to every row, and the rows, each a named set
of dotted overrides (applied with :func:`pipeline.config.apply_override`, so a misspelt key
fails before anything trains). Every (row, seed) run trains HAM-Net on the training subset,
localizes the test subset and evaluates it with :func:`hamnet.evaluate.evaluate_detection`;
the table reports mean ± std over seeds of mAP at each tIoU and their average, in the same
layout as the paper's tables.

Runs are resumable: each run's folder keeps its checkpoint, results and metrics, named by a
hash of its full settings, so rerunning the same ablation only computes what is missing and a
changed row reruns only that row.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from core.activitynet import AnnotationError, read_ground_truth_json, video_labels
from core.atomic import write_json_atomic, write_text_atomic
from core.hashing import settings_hash
from pipeline.config import ConfigError, load_config, resolve_config_path
from storage.annotations import select_subset
from storage.featstore import FeatureStore


class AblationError(ValueError):
    """An ablation file or its inputs are invalid; the message names the file or row."""


@dataclass(frozen=True)
class AblationRow:
    """One row: a name, the paper item it reproduces (``group``) and its dotted overrides."""

    name: str
    overrides: tuple[str, ...] = ()
    group: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "row") -> AblationRow:
        if not isinstance(d, Mapping):
            raise AblationError(f"{where}: each row must be a mapping with name/overrides, got {d!r}")
        unknown = [k for k in d if k not in ("name", "overrides", "group")]
        if unknown:
            raise AblationError(f"{where}: unknown key(s) {unknown} (known: group, name, overrides)")
        if not d.get("name"):
            raise AblationError(f"{where}: a row needs a non-empty 'name'")
        if "," in str(d["name"]):
            raise AblationError(
                f"{where}: row name {d['name']!r} must not contain ',' (--rows separates names with commas)"
            )
        ov = d.get("overrides") or []
        if isinstance(ov, str) or not all(isinstance(o, str) for o in ov):
            raise AblationError(f"{where} ({d['name']}): 'overrides' must be a list of 'key=value' strings")
        return cls(str(d["name"]), tuple(ov), str(d.get("group", "")))


@dataclass(frozen=True)
class AblationSpec:
    """The whole ablation; fields mirror the keys of the ablation YAML file."""

    config: str
    rows: tuple[AblationRow, ...]
    seeds: tuple[int, ...] = (0,)
    overrides: tuple[str, ...] = ()
    train_subset: str = "validation"
    test_subset: str = "test"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "ablation") -> AblationSpec:
        known = ("config", "rows", "seeds", "overrides", "train_subset", "test_subset")
        if not isinstance(d, Mapping):
            raise AblationError(f"{where}: top level must be a mapping")
        unknown = [k for k in d if k not in known]
        if unknown:
            raise AblationError(f"{where}: unknown key(s) {unknown} (known: {sorted(known)})")
        for k in ("config", "rows"):
            if k not in d:
                raise AblationError(f"{where}: missing {k!r}")
        rows = tuple(AblationRow.from_dict(r, where=f"{where} rows[{i}]") for i, r in enumerate(d["rows"] or []))
        if not rows:
            raise AblationError(f"{where}: no rows")
        names = [r.name for r in rows]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise AblationError(f"{where}: duplicate row name(s) {dup}")
        seeds = d.get("seeds", [0])
        if (
            not isinstance(seeds, list)
            or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        ):
            raise AblationError(f"{where}: 'seeds' must be a non-empty list of integers, got {seeds!r}")
        ov = d.get("overrides") or []
        if isinstance(ov, str) or not all(isinstance(o, str) for o in ov):
            raise AblationError(f"{where}: 'overrides' must be a list of 'key=value' strings")
        spec = cls(
            str(d["config"]),
            rows,
            tuple(seeds),
            tuple(ov),
            str(d.get("train_subset", "validation")),
            str(d.get("test_subset", "test")),
        )
        for row in spec.rows:  # fail now on a bad key, not after hours of training
            try:
                spec.run_config(row, spec.seeds[0])
            except ConfigError as e:
                raise AblationError(f"{where}: row {row.name!r}: {e}") from e
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "train_subset": self.train_subset,
            "test_subset": self.test_subset,
            "seeds": list(self.seeds),
            "overrides": list(self.overrides),
            "rows": [{"name": r.name, "group": r.group, "overrides": list(r.overrides)} for r in self.rows],
        }

    def run_config(self, row: AblationRow, seed: int) -> dict[str, Any]:
        """The full config of one run: dataset config, common overrides, row overrides, seed."""
        return load_config(self.config, [*self.overrides, *row.overrides, f"train.seed={seed}"])

    def select(self, rows: Sequence[str] | None = None, seeds: Sequence[int] | None = None) -> AblationSpec:
        """A copy with only the named rows and/or the given seeds."""
        keep = self.rows
        if rows:
            missing = [n for n in rows if n not in {r.name for r in self.rows}]
            if missing:
                raise AblationError(f"unknown row(s) {missing}; rows are {[r.name for r in self.rows]}")
            keep = tuple(r for r in self.rows if r.name in rows)
        return AblationSpec(
            self.config,
            keep,
            tuple(seeds) if seeds else self.seeds,
            self.overrides,
            self.train_subset,
            self.test_subset,
        )


def load_ablation_spec(path: str | os.PathLike) -> AblationSpec:
    """Read an ablation YAML (a path, or a name under configs/ such as ``ablation``)."""
    try:
        p = resolve_config_path(path)
    except ConfigError as e:
        raise AblationError(str(e)) from e
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise AblationError(f"{p}: not valid YAML ({e})") from e
    return AblationSpec.from_dict(data or {}, where=str(p))


# --------------------------------------------------------------------------------------
# Running


def slug(name: str) -> str:
    """A folder name for a row name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "row"


@dataclass
class RunResult:
    """Metrics of one (row, seed) run, as the evaluator returned them."""

    row: str
    seed: int
    tiou_thresholds: list[float]
    map: list[float]
    average_map: float
    classification_map: float | None
    run_dir: str
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def load_store_in_memory(
    store_dir: str | os.PathLike, video_ids: Sequence[str]
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Joint features and seconds-per-snippet of the given videos (read once, reused by every run)."""
    feats: dict[str, np.ndarray] = {}
    sps: dict[str, float] = {}
    store = FeatureStore(store_dir)
    missing = [v for v in video_ids if v not in set(store.video_ids)]
    if missing:
        raise AblationError(f"{store_dir}: no features for {len(missing)} ground-truth video(s), e.g. {missing[:3]}")
    for v in video_ids:
        rec = store.record(v)
        feats[v] = rec.joint()
        sps[v] = rec.seconds_per_snippet
    return feats, sps


def run_one(
    cfg: Mapping[str, Any],
    *,
    train_features: Mapping[str, np.ndarray],
    train_labels: Mapping[str, Sequence[str]],
    classes: Sequence[str],
    test_features: Mapping[str, np.ndarray],
    seconds_per_snippet: Mapping[str, float],
    test_gt: Mapping[str, Any],
    run_dir: str | os.PathLike,
    progress: bool = False,
) -> dict[str, Any]:
    """Train, localize and evaluate one configuration; returns the metrics dict (also saved).

    Writes ``model.pt``, ``results.json`` (ActivityNet results form) and ``metrics.json`` in
    ``run_dir``; an existing ``metrics.json`` of the same settings is returned as is.
    """
    from hamnet.config import LocalizeConfig, LossConfig, ModelConfig, TrainConfig
    from hamnet.evaluate import classification_map, evaluate_detection
    from hamnet.localize import localize_videos
    from hamnet.results import results_to_dict
    from hamnet.train import train_hamnet

    run_dir = Path(run_dir)
    key = settings_hash(cfg, sorted(train_labels), sorted(test_features))
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        old = json.loads(metrics_path.read_text(encoding="utf-8"))
        if old.get("settings_hash") == key:
            return old
    t0 = time.time()
    ckpt = train_hamnet(
        train_features,
        train_labels,
        classes,
        model_cfg=ModelConfig.from_dict(cfg["model"]),
        loss_cfg=LossConfig.from_dict(cfg["loss"]),
        train_cfg=TrainConfig.from_dict(cfg["train"]),
        checkpoint_path=run_dir / "model.pt",
        progress=progress,
    )
    locs = localize_videos(
        ckpt,
        test_features,
        LocalizeConfig.from_dict(cfg["localize"]),
        seconds_per_snippet=seconds_per_snippet,
        progress=progress,
        device=cfg["train"]["device"],
    )
    preds = results_to_dict({v: loc.segments for v, loc in locs.items()})
    write_json_atomic(run_dir / "results.json", preds)
    ev = cfg["evaluate"]
    res = evaluate_detection(test_gt, preds, ev["tiou_thresholds"], mode=ev["mode"])
    scores = {v: {c: float(s) for c, s in zip(loc.classes, loc.video_scores)} for v, loc in locs.items()}
    cls_map = classification_map(video_labels(test_gt), scores)
    metrics = {
        "settings_hash": key,
        "tiou_thresholds": [float(t) for t in res.tiou_thresholds],
        "map": [float(m) for m in res.map],
        "average_map": float(res.average_map),
        "classification_map": float(cls_map),
        "warnings": list(res.warnings),
        "seconds": round(time.time() - t0, 1),
        "config": cfg,
    }
    write_json_atomic(metrics_path, metrics)
    return metrics


def run_ablation(
    spec: AblationSpec,
    store_dir: str | os.PathLike,
    ground_truth: Mapping[str, Any] | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    labels: Mapping[str, Sequence[str]] | None = None,
    progress: bool = True,
    log=print,
) -> dict[str, Any]:
    """Run every (row, seed) of ``spec`` and write ``ablation.json`` and ``ablation.md`` in ``out_dir``.

    ``ground_truth``: ActivityNet-form dict or path; training labels are its
    ``spec.train_subset`` videos' labels unless ``labels`` is given; the test set is its
    ``spec.test_subset`` videos. Returns the table (the content of ``ablation.json``).
    """
    out = Path(out_dir)
    gt = read_ground_truth_json(ground_truth) if not isinstance(ground_truth, Mapping) else ground_truth
    try:
        test_gt = select_subset(gt, spec.test_subset)
        train_gt = select_subset(gt, spec.train_subset)
    except AnnotationError as e:
        raise AblationError(f"ground truth: {e}") from e
    train_labels = dict(labels) if labels is not None else video_labels(train_gt)
    classes = list(gt.get("classes") or sorted({c for ls in video_labels(gt).values() for c in ls}))
    log(f"loading {len(train_labels)} training and {len(test_gt['database'])} test videos from {store_dir}")
    train_feats, _ = load_store_in_memory(store_dir, sorted(train_labels))
    test_feats, sps = load_store_in_memory(store_dir, sorted(test_gt["database"]))

    runs: list[RunResult] = []
    total = len(spec.rows) * len(spec.seeds)
    # Seeds outermost: a run stopped early still leaves a table covering every row.
    for seed in spec.seeds:
        for row in spec.rows:
            cfg = spec.run_config(row, seed)
            run_dir = out / "runs" / slug(row.name) / f"seed{seed}"
            t0 = time.time()
            m = run_one(
                cfg,
                train_features=train_feats,
                train_labels=train_labels,
                classes=classes,
                test_features=test_feats,
                seconds_per_snippet=sps,
                test_gt=test_gt,
                run_dir=run_dir,
                progress=progress,
            )
            r = RunResult(
                row.name,
                seed,
                m["tiou_thresholds"],
                m["map"],
                m["average_map"],
                m.get("classification_map"),
                str(run_dir),
                m.get("seconds", 0.0),
                m.get("warnings", []),
            )
            runs.append(r)
            log(
                f"[{len(runs)}/{total}] {row.name} seed {seed}: mAP@0.5={_at(r, 0.5)} AVG={100 * r.average_map:.2f} "
                f"({time.time() - t0:.0f} s)"
            )
            table = summarize(spec, runs)
            _write_table(out, table)  # after every run: a killed ablation still leaves a table
    return summarize(spec, runs)


def collect_table(spec: AblationSpec, out_dir: str | os.PathLike, *, write: bool = True) -> dict[str, Any]:
    """The table of the runs already finished in ``out_dir`` (no training), e.g. after
    running different rows with different seed sets into one folder. A run counts only when
    its metrics belong to the row's current settings (other runs are ignored)."""
    out = Path(out_dir)
    runs: list[RunResult] = []
    for seed in spec.seeds:
        for row in spec.rows:
            run_dir = out / "runs" / slug(row.name) / f"seed{seed}"
            mp = run_dir / "metrics.json"
            if not mp.is_file():
                continue
            m = json.loads(mp.read_text(encoding="utf-8"))
            if _rounded(m.get("config")) != _rounded(spec.run_config(row, seed)):
                continue
            runs.append(
                RunResult(
                    row.name,
                    seed,
                    m["tiou_thresholds"],
                    m["map"],
                    m["average_map"],
                    m.get("classification_map"),
                    str(run_dir),
                    m.get("seconds", 0.0),
                    m.get("warnings", []),
                )
            )
    if not runs:
        raise AblationError(f"{out}: no finished runs of this ablation")
    table = summarize(spec, runs)
    if write:
        _write_table(out, table)
    return table


def _rounded(obj: Any) -> Any:
    """Settings compared up to float round-off (12 significant digits): a threshold list
    rebuilt 1 ulp differently is the same setting."""
    if isinstance(obj, float):
        return float(f"{obj:.12g}")
    if isinstance(obj, Mapping):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v) for v in obj]
    return obj


def _at(r: RunResult, t: float) -> str:
    for tt, m in zip(r.tiou_thresholds, r.map):
        if abs(tt - t) < 1e-9:
            return f"{100 * m:.2f}"
    return "-"


def summarize(spec: AblationSpec, runs: Sequence[RunResult]) -> dict[str, Any]:
    """Mean and (sample, ddof=1) std over seeds per row, in percent; per-run values kept."""
    rows_out = []
    for row in spec.rows:
        rr = sorted((r for r in runs if r.row == row.name), key=lambda r: spec.seeds.index(r.seed))
        if not rr:
            continue
        maps = np.array([r.map for r in rr], dtype=np.float64) * 100
        avg = np.array([r.average_map for r in rr], dtype=np.float64) * 100
        cls = [r.classification_map for r in rr if r.classification_map is not None]
        ddof = 1 if len(rr) > 1 else 0
        rows_out.append(
            {
                "name": row.name,
                "group": row.group,
                "overrides": list(row.overrides),
                "seeds": [r.seed for r in rr],
                "map_mean": maps.mean(0).tolist(),
                "map_std": maps.std(0, ddof=ddof).tolist(),
                "average_mean": float(avg.mean()),
                "average_std": float(avg.std(ddof=ddof)),
                "classification_map_mean": float(np.mean(cls) * 100) if cls else None,
                "runs": [r.to_dict() for r in rr],
            }
        )
    tious = runs[0].tiou_thresholds if runs else []
    return {"spec": spec.to_dict(), "tiou_thresholds": tious, "rows": rows_out, "units": "percent (mAP x 100)"}


def format_markdown(table: Mapping[str, Any]) -> str:
    """The table in Markdown: one row per configuration, mean ± std over seeds."""
    tious = table["tiou_thresholds"]
    lo, hi = (tious[0], tious[-1]) if tious else (0, 0)
    head = ["configuration", "group", "seeds"] + [f"mAP@{t:g}" for t in tious] + [f"AVG ({lo:g}:{hi:g})", "cls mAP"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(tious) + 2)) + "|"]
    for r in table["rows"]:
        cells = [r["name"], r["group"], str(len(r["seeds"]))]
        cells += [f"{m:.1f} ± {s:.1f}" for m, s in zip(r["map_mean"], r["map_std"])]
        cells.append(f"**{r['average_mean']:.1f} ± {r['average_std']:.1f}**")
        cells.append("-" if r["classification_map_mean"] is None else f"{r['classification_map_mean']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write_table(out: Path, table: Mapping[str, Any]) -> None:
    write_json_atomic(out / "ablation.json", table)
    write_text_atomic(out / "ablation.md", format_markdown(table))

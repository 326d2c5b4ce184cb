"""HAM-Net settings: one dataclass per section of ``configs/base/hamnet.yaml``.

Fields mirror the YAML keys exactly; ``from_dict`` is strict (an unknown key is an error
naming it) and checks values, so a bad setting fails before any training starts. The
defaults are the authors' THUMOS14 implementation (the same values as the base YAML).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

T = TypeVar("T")

READINGS = ("authors", "paper")
DROP_MODES = ("selective", "random", "inverse")
NMS_IOU = ("authors", "plain")
DEVICES = ("auto", "cpu", "cuda")
INPUT_NORMS = ("none", "standardize")


def _strict_kwargs(cls: type, d: Mapping[str, Any], section: str) -> dict[str, Any]:
    if not isinstance(d, Mapping):
        raise ValueError(f"{section}: expected a mapping of settings, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = [k for k in d if k not in known]
    if unknown:
        raise ValueError(
            f"{section}: unknown setting(s) {', '.join(f'{section}.{k}' for k in unknown)} (known: {sorted(known)})"
        )
    return dict(d)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def _num(section: str, name: str, v: Any, *, integer: bool = False) -> Any:
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{section}.{name} must be {kind}, got {v!r}")
    return int(v) if integer else float(v)


@dataclass(frozen=True)
class ModelConfig:
    """Network shape (REFERENCE section 1, authors' implementation)."""

    feature_dim: int = 2048
    hidden_dim: int = 2048
    attention_hidden: int = 512
    dropout: float = 0.7
    leaky_slope: float = 0.2
    smooth_kernel: int = 0
    input_norm: str = "none"  # none | standardize (per-dimension, statistics of the training features)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        kw = _strict_kwargs(cls, d, "model")
        for k in ("feature_dim", "hidden_dim", "attention_hidden", "smooth_kernel"):
            if k in kw:
                kw[k] = _num("model", k, kw[k], integer=True)
        for k in ("dropout", "leaky_slope"):
            if k in kw:
                kw[k] = _num("model", k, kw[k])
        cfg = cls(**kw)
        for k in ("feature_dim", "hidden_dim", "attention_hidden"):
            _check(getattr(cfg, k) > 0, f"model.{k} must be positive, got {getattr(cfg, k)}")
        _check(0.0 <= cfg.dropout < 1.0, f"model.dropout must be in [0, 1), got {cfg.dropout}")
        # An even kernel with stride 1 and padding k//2 would change T; the authors use odd ones.
        _check(
            cfg.smooth_kernel == 0 or (cfg.smooth_kernel > 0 and cfg.smooth_kernel % 2 == 1),
            f"model.smooth_kernel must be 0 (off) or a positive odd number, got {cfg.smooth_kernel}",
        )
        _check(cfg.input_norm in INPUT_NORMS, f"model.input_norm must be one of {INPUT_NORMS}, got {cfg.input_norm!r}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LossWeights:
    """Each loss term's weight in the total; 0 switches the term off (Table 1 ablations)."""

    bcl: float = 0.8
    hal: float = 0.2
    sal: float = 0.8
    ssal: float = 0.2
    sparsity: float = 0.8
    guide: float = 0.8

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LossWeights:
        kw = _strict_kwargs(cls, d, "loss.weights")
        kw = {k: _num("loss.weights", k, v) for k, v in kw.items()}
        cfg = cls(**kw)
        for k, v in asdict(cfg).items():
            _check(v >= 0, f"loss.weights.{k} must be >= 0, got {v}")
        _check(any(v > 0 for v in asdict(cfg).values()), "loss.weights: at least one weight must be > 0")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LossConfig:
    """The six HAM-Net losses; see docs/hamnet.md for the two readings and the drop modes."""

    reading: str = "authors"
    topk_ratio: int = 10
    drop_threshold: float = 0.2
    drop_mode: str = "selective"
    weights: LossWeights = field(default_factory=LossWeights)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LossConfig:
        kw = _strict_kwargs(cls, d, "loss")
        if "weights" in kw:
            w = kw["weights"]
            kw["weights"] = w if isinstance(w, LossWeights) else LossWeights.from_dict(w)
        if "topk_ratio" in kw:
            kw["topk_ratio"] = _num("loss", "topk_ratio", kw["topk_ratio"], integer=True)
        if "drop_threshold" in kw:
            kw["drop_threshold"] = _num("loss", "drop_threshold", kw["drop_threshold"])
        cfg = cls(**kw)
        _check(cfg.reading in READINGS, f"loss.reading must be one of {READINGS}, got {cfg.reading!r}")
        _check(cfg.drop_mode in DROP_MODES, f"loss.drop_mode must be one of {DROP_MODES}, got {cfg.drop_mode!r}")
        _check(cfg.topk_ratio >= 1, f"loss.topk_ratio must be >= 1, got {cfg.topk_ratio}")
        _check(0.0 <= cfg.drop_threshold <= 1.0, f"loss.drop_threshold must be in [0, 1], got {cfg.drop_threshold}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and sampling (authors: Adam 1e-5, wd 1e-3, batch 20, 100 epochs, 500 snippets)."""

    lr: float = 1.0e-5
    weight_decay: float = 1.0e-3
    batch_size: int = 20
    epochs: int = 100
    num_snippets: int = 500
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 1

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        kw = _strict_kwargs(cls, d, "train")
        for k in ("batch_size", "epochs", "num_snippets", "seed", "checkpoint_every"):
            if k in kw:
                kw[k] = _num("train", k, kw[k], integer=True)
        for k in ("lr", "weight_decay"):
            if k in kw:
                kw[k] = _num("train", k, kw[k])
        cfg = cls(**kw)
        _check(cfg.lr > 0, f"train.lr must be > 0, got {cfg.lr}")
        _check(cfg.weight_decay >= 0, f"train.weight_decay must be >= 0, got {cfg.weight_decay}")
        for k in ("batch_size", "num_snippets", "checkpoint_every"):
            _check(getattr(cfg, k) >= 1, f"train.{k} must be >= 1, got {getattr(cfg, k)}")
        _check(cfg.epochs >= 0, f"train.epochs must be >= 0, got {cfg.epochs}")
        _check(cfg.device in DEVICES, f"train.device must be one of {DEVICES}, got {cfg.device!r}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LocalizeConfig:
    """Proposal generation and scoring (REFERENCE section 2, authors' THUMOS path)."""

    class_threshold: float = 0.2
    attention_thresholds: tuple[float, ...] = (
        0.1,
        0.18888888888888888,
        0.2777777777777778,
        0.3666666666666667,
        0.4555555555555556,
        0.5444444444444445,
        0.6333333333333333,
        0.7222222222222222,
        0.8111111111111111,
        0.9,
    )
    outer_ratio: float = 0.25
    class_score_weight: float = 0.2
    nms_sigma: float = 0.3
    nms_iou: str = "authors"
    topk_ratio: int = 10

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LocalizeConfig:
        kw = _strict_kwargs(cls, d, "localize")
        if "attention_thresholds" in kw:
            ths = kw["attention_thresholds"]
            if isinstance(ths, (int, float)) or not hasattr(ths, "__iter__"):
                raise ValueError(f"localize.attention_thresholds must be a list of numbers, got {ths!r}")
            kw["attention_thresholds"] = tuple(_num("localize", "attention_thresholds", t) for t in ths)
        for k in ("class_threshold", "outer_ratio", "class_score_weight", "nms_sigma"):
            if k in kw:
                kw[k] = _num("localize", k, kw[k])
        if "topk_ratio" in kw:
            kw["topk_ratio"] = _num("localize", "topk_ratio", kw["topk_ratio"], integer=True)
        cfg = cls(**kw)
        _check(len(cfg.attention_thresholds) > 0, "localize.attention_thresholds must not be empty")
        _check(cfg.nms_iou in NMS_IOU, f"localize.nms_iou must be one of {NMS_IOU}, got {cfg.nms_iou!r}")
        _check(cfg.nms_sigma > 0, f"localize.nms_sigma must be > 0, got {cfg.nms_sigma}")
        _check(cfg.outer_ratio >= 0, f"localize.outer_ratio must be >= 0, got {cfg.outer_ratio}")
        _check(cfg.topk_ratio >= 1, f"localize.topk_ratio must be >= 1, got {cfg.topk_ratio}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["attention_thresholds"] = list(self.attention_thresholds)
        return d


def hamnet_settings(cfg: Mapping[str, Any]) -> tuple[ModelConfig, LossConfig, TrainConfig, LocalizeConfig]:
    """Build the four settings objects from a loaded config (``pipeline.config.load_config``).

    A missing section is an error: the YAML files define all of them, so absence means the
    wrong file was loaded.
    """
    missing = [s for s in ("model", "loss", "train", "localize") if s not in cfg]
    if missing:
        raise ValueError(f"config lacks section(s) {missing}; load a dataset config that inherits base/hamnet.yaml")
    return (
        ModelConfig.from_dict(cfg["model"]),
        LossConfig.from_dict(cfg["loss"]),
        TrainConfig.from_dict(cfg["train"]),
        LocalizeConfig.from_dict(cfg["localize"]),
    )


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``; called at run time only."""
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"device must be auto, cpu or cuda, got {name!r}")
    return name

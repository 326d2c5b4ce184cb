"""HAM-Net settings: one dataclass per config section (``model``, ``loss``, ``train``,
``localize``, ``evaluate``).

Fields mirror the YAML keys exactly; ``from_dict`` is strict (an unknown key is an error
naming it) and checks values, so a bad setting fails before any training starts. The
defaults here are the project's only defaults: the authors' THUMOS14 implementation
(docs/configuration.md lists them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from core.device import check_device_name
from core.strict import check, number, strict_kwargs

T = TypeVar("T")

READINGS = ("authors", "paper")
DROP_MODES = ("selective", "random", "inverse")
NMS_IOU = ("authors", "plain")
INPUT_NORMS = ("none", "standardize")


@dataclass(frozen=True)
class ModelConfig:
    """Network shape (authors' implementation; docs/hamnet.md)."""

    feature_dim: int = 2048
    hidden_dim: int = 2048
    attention_hidden: int = 512
    dropout: float = 0.7
    leaky_slope: float = 0.2
    smooth_kernel: int = 0
    input_norm: str = "none"  # none | standardize (per-dimension, statistics of the training features)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        kw = strict_kwargs(cls, d, "model")
        for k in ("feature_dim", "hidden_dim", "attention_hidden", "smooth_kernel"):
            if k in kw:
                kw[k] = number("model", k, kw[k], integer=True)
        for k in ("dropout", "leaky_slope"):
            if k in kw:
                kw[k] = number("model", k, kw[k])
        cfg = cls(**kw)
        for k in ("feature_dim", "hidden_dim", "attention_hidden"):
            check(getattr(cfg, k) > 0, f"model.{k} must be positive, got {getattr(cfg, k)}")
        check(0.0 <= cfg.dropout < 1.0, f"model.dropout must be in [0, 1), got {cfg.dropout}")
        # An even kernel with stride 1 and padding k//2 would change T; the authors use odd ones.
        check(
            cfg.smooth_kernel == 0 or (cfg.smooth_kernel > 0 and cfg.smooth_kernel % 2 == 1),
            f"model.smooth_kernel must be 0 (off) or a positive odd number, got {cfg.smooth_kernel}",
        )
        check(cfg.input_norm in INPUT_NORMS, f"model.input_norm must be one of {INPUT_NORMS}, got {cfg.input_norm!r}")
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
        kw = strict_kwargs(cls, d, "loss.weights")
        kw = {k: number("loss.weights", k, v) for k, v in kw.items()}
        cfg = cls(**kw)
        for k, v in asdict(cfg).items():
            check(v >= 0, f"loss.weights.{k} must be >= 0, got {v}")
        check(any(v > 0 for v in asdict(cfg).values()), "loss.weights: at least one weight must be > 0")
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
        kw = strict_kwargs(cls, d, "loss")
        if "weights" in kw:
            w = kw["weights"]
            kw["weights"] = w if isinstance(w, LossWeights) else LossWeights.from_dict(w)
        if "topk_ratio" in kw:
            kw["topk_ratio"] = number("loss", "topk_ratio", kw["topk_ratio"], integer=True)
        if "drop_threshold" in kw:
            kw["drop_threshold"] = number("loss", "drop_threshold", kw["drop_threshold"])
        cfg = cls(**kw)
        check(cfg.reading in READINGS, f"loss.reading must be one of {READINGS}, got {cfg.reading!r}")
        check(cfg.drop_mode in DROP_MODES, f"loss.drop_mode must be one of {DROP_MODES}, got {cfg.drop_mode!r}")
        check(cfg.topk_ratio >= 1, f"loss.topk_ratio must be >= 1, got {cfg.topk_ratio}")
        check(0.0 <= cfg.drop_threshold <= 1.0, f"loss.drop_threshold must be in [0, 1], got {cfg.drop_threshold}")
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
        kw = strict_kwargs(cls, d, "train")
        for k in ("batch_size", "epochs", "num_snippets", "seed", "checkpoint_every"):
            if k in kw:
                kw[k] = number("train", k, kw[k], integer=True)
        for k in ("lr", "weight_decay"):
            if k in kw:
                kw[k] = number("train", k, kw[k])
        cfg = cls(**kw)
        check(cfg.lr > 0, f"train.lr must be > 0, got {cfg.lr}")
        check(cfg.weight_decay >= 0, f"train.weight_decay must be >= 0, got {cfg.weight_decay}")
        for k in ("batch_size", "num_snippets", "checkpoint_every"):
            check(getattr(cfg, k) >= 1, f"train.{k} must be >= 1, got {getattr(cfg, k)}")
        check(cfg.epochs >= 0, f"train.epochs must be >= 0, got {cfg.epochs}")
        check_device_name(cfg.device, "train.device")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LocalizeConfig:
    """Proposal generation and scoring (authors' THUMOS path; docs/hamnet.md, "Localization")."""

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
    device: str = "auto"  # where the trained model runs; changes speed, not results

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LocalizeConfig:
        kw = strict_kwargs(cls, d, "localize")
        if "attention_thresholds" in kw:
            ths = kw["attention_thresholds"]
            if isinstance(ths, (int, float)) or not hasattr(ths, "__iter__"):
                raise ValueError(f"localize.attention_thresholds must be a list of numbers, got {ths!r}")
            kw["attention_thresholds"] = tuple(number("localize", "attention_thresholds", t) for t in ths)
        for k in ("class_threshold", "outer_ratio", "class_score_weight", "nms_sigma"):
            if k in kw:
                kw[k] = number("localize", k, kw[k])
        if "topk_ratio" in kw:
            kw["topk_ratio"] = number("localize", "topk_ratio", kw["topk_ratio"], integer=True)
        cfg = cls(**kw)
        check(len(cfg.attention_thresholds) > 0, "localize.attention_thresholds must not be empty")
        check(cfg.nms_iou in NMS_IOU, f"localize.nms_iou must be one of {NMS_IOU}, got {cfg.nms_iou!r}")
        check(cfg.nms_sigma > 0, f"localize.nms_sigma must be > 0, got {cfg.nms_sigma}")
        check(cfg.outer_ratio >= 0, f"localize.outer_ratio must be >= 0, got {cfg.outer_ratio}")
        check(cfg.topk_ratio >= 1, f"localize.topk_ratio must be >= 1, got {cfg.topk_ratio}")
        check_device_name(cfg.device, "localize.device")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["attention_thresholds"] = list(self.attention_thresholds)
        return d


EVALUATE_MODES = ("activitynet", "thumos14")


@dataclass(frozen=True)
class EvaluateConfig:
    """Detection evaluation: which official evaluator's semantics, at which tIoU thresholds.

    ``activitynet`` follows the official ActivityNet evaluator, ``thumos14`` the THUMOS14 kit
    (docs/evaluation.md says where they differ).
    """

    mode: str = "activitynet"
    tiou_thresholds: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvaluateConfig:
        kw = strict_kwargs(cls, d, "evaluate")
        if "tiou_thresholds" in kw:
            ths = kw["tiou_thresholds"]
            if isinstance(ths, (int, float, str)) or not hasattr(ths, "__iter__"):
                raise ValueError(f"evaluate.tiou_thresholds must be a list of numbers, got {ths!r}")
            kw["tiou_thresholds"] = tuple(number("evaluate", "tiou_thresholds", t) for t in ths)
        cfg = cls(**kw)
        check(cfg.mode in EVALUATE_MODES, f"evaluate.mode must be one of {EVALUATE_MODES}, got {cfg.mode!r}")
        check(len(cfg.tiou_thresholds) > 0, "evaluate.tiou_thresholds must not be empty")
        check(
            all(0.0 < t <= 1.0 for t in cfg.tiou_thresholds),
            f"evaluate.tiou_thresholds must lie in (0, 1], got {list(cfg.tiou_thresholds)}",
        )
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "tiou_thresholds": list(self.tiou_thresholds)}


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

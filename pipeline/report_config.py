"""Report settings: the ``report`` section of a config (docs/configuration.md).

They change only what the HTML report draws, never the results files: the display rule for
predictions (Soft-NMS keeps every decayed duplicate by design, which is right for mAP and
unreadable in a figure) and which videos get a timeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from core.strict import strict_kwargs


@dataclass(frozen=True)
class ReportConfig:
    """What the report shows. See docs/pipeline.md ("The report") for each key."""

    min_score: float = (
        0.1  # other than each class's best, predictions scoring below this are not drawn (they stay in the results)
    )
    nms_tiou: float = 0.3  # display-only NMS within a class: drop a prediction overlapping a better one this much
    top_per_class: int = 50  # at most this many predictions drawn per class and video
    include_train: bool = False  # also draw the training videos (they have no ground truth)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReportConfig:
        """Strict: an unknown key or a value of the wrong kind is an error naming ``report.<key>``."""
        kw = strict_kwargs(cls, d, "report")
        for k in ("min_score", "nms_tiou"):
            if k in kw:
                v = kw[k]
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ValueError(f"report.{k} must be a number, got {v!r}")
                kw[k] = float(v)
        if "top_per_class" in kw:
            v = kw["top_per_class"]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"report.top_per_class must be an integer >= 1, got {v!r}")
        if "include_train" in kw and not isinstance(kw["include_train"], bool):
            raise ValueError(f"report.include_train must be true or false, got {kw['include_train']!r}")
        cfg = cls(**kw)
        if not 0.0 < cfg.nms_tiou <= 1.0:
            raise ValueError(f"report.nms_tiou must be in (0, 1], got {cfg.nms_tiou}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rule_text(self) -> str:
        """The display rule in words, printed on every page that draws predictions."""
        return (
            f"Predictions drawn: per class, the best one and the others scoring at least {self.min_score:g}, after a display-only "
            f"NMS that drops any prediction overlapping a higher-scoring one of the same class by tIoU >= "
            f"{self.nms_tiou:g} (Soft-NMS keeps such decayed duplicates), at most {self.top_per_class} per "
            "class. The results files and the evaluation keep every proposal."
        )


def score_text(class_score_weight: float) -> str:
    """What a prediction's score means (localize.class_score_weight is the run's value)."""
    return (
        "Score = outer-inner contrast of the class activation (its mean inside the segment minus its "
        f"mean in the margins around it) + {class_score_weight:g} x the video's probability of the class "
        "(localize.class_score_weight). It ranks predictions; it is not a probability and can exceed 1."
    )

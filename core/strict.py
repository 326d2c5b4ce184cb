"""Strict reading of settings dictionaries into frozen dataclasses.

Every settings section (``extract``, ``model``, ``loss``, ``train``, ``localize``, ``evaluate``)
is read the same way: an unknown key is an error naming it and listing the known ones, and a
value of the wrong type is an error naming the dotted key, so a typo fails before any work
starts instead of silently falling back to a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any


def strict_kwargs(cls: type, d: Any, section: str) -> dict[str, Any]:
    """``d`` as keyword arguments for dataclass ``cls``; unknown keys raise ``ValueError``."""
    if not isinstance(d, Mapping):
        raise ValueError(f"{section}: expected a mapping of settings, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = [k for k in d if k not in known]
    if unknown:
        raise ValueError(
            f"{section}: unknown setting(s) {', '.join(f'{section}.{k}' for k in unknown)} (known: {sorted(known)})"
        )
    return dict(d)


def check(cond: bool, msg: str) -> None:
    """Raise ``ValueError(msg)`` unless ``cond``: a settings check reads as one line."""
    if not cond:
        raise ValueError(msg)


def number(section: str, name: str, v: Any, *, integer: bool = False) -> Any:
    """``v`` as int (``integer``) or float; booleans, strings and ``None`` are errors naming the key."""
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{section}.{name} must be {kind}, got {v!r}")
    return int(v) if integer else float(v)

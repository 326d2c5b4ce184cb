"""Reading the YAML settings in ``configs/``.

One way to configure things: a dataset config (``configs/thumos14.yaml``) names the shared
base files it builds on in an explicit ``inherit:`` list and then sets what differs. The
merge is spelled out here, not hidden: bases are read in the listed order, later values
replace earlier ones key by key inside each section, and a key the bases do not define is an
error (a typo such as ``train.epoch`` fails loudly instead of being ignored).

Overrides from the command line use dotted keys with YAML values, e.g.
``train.epochs=5`` or ``localize.attention_thresholds=[0.2,0.5]``; they obey the same rule.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float.

    PyYAML follows YAML 1.1, where a float needs a dot (``1.0e-3``), so ``train.lr=1e-3`` would
    otherwise arrive as the string "1e-3" -- a trap for every user typing a learning rate.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506 -- a SafeLoader subclass


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file or key."""


def resolve_config_path(name: str | os.PathLike) -> Path:
    """Accept a path, or a bare name such as ``thumos14`` meaning ``configs/thumos14.yaml``."""
    p = Path(name)
    if p.is_file():
        return p
    for cand in (CONFIG_DIR / p, CONFIG_DIR / f"{p}.yaml"):
        if cand.is_file():
            return cand
    raise ConfigError(f"config {str(name)!r} not found (looked for it as a path and under {CONFIG_DIR})")


def load_config(name: str | os.PathLike, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Load a config with its bases and apply ``key.sub=value`` overrides."""
    cfg = _load_with_bases(resolve_config_path(name), seen=())
    for item in overrides:
        apply_override(cfg, item)
    return cfg


def _load_with_bases(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: circular inherit chain {[str(p) for p in seen]}")
    try:
        data = _yaml(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    bases = data.pop("inherit", []) or []
    if isinstance(bases, str):
        bases = [bases]
    merged: dict[str, Any] = {}
    for b in bases:
        merged = merge(merged, _load_with_bases((path.parent / b), seen + (path,)), strict=False, where=str(path))
    return merge(merged, data, strict=bool(bases), where=str(path))


def merge(base: Mapping[str, Any], update: Mapping[str, Any], *, strict: bool, where: str) -> dict[str, Any]:
    """Return ``base`` updated by ``update``, recursing into nested mappings.

    With ``strict``, ``update`` may only set keys that ``base`` defines, at every level, so that a
    misspelt setting is reported instead of silently ignored. Only the keys given change: a
    dataset file may set ``extract.tvl1.nscales`` alone and keep the base's other TV-L1 values.
    """
    out = copy.deepcopy(dict(base))
    for key, val in update.items():
        if strict and key not in out:
            raise ConfigError(f"{where}: unknown setting {key!r} (known: {sorted(out)})")
        if isinstance(val, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], val, strict=strict, where=f"{where}: {key}")
        else:
            out[key] = copy.deepcopy(val)
    return out


def apply_override(cfg: dict[str, Any], item: str) -> None:
    """Apply one ``section.key=value`` override in place (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    node: Any = cfg
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"override {item!r}: unknown section {'.'.join(parts[: i + 1])!r}")
        node = node[part]
    if not isinstance(node, dict) or parts[-1] not in node:
        raise ConfigError(f"override {item!r}: unknown setting {key!r}")
    try:
        node[parts[-1]] = _yaml(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({e})") from e


def parse_overrides(text: str) -> list[str]:
    """Split a command-line override string: ``"train.epochs=5 loss.drop_mode=random"``.

    Separators are whitespace or ';' (commas stay inside values such as lists).
    """
    out: list[str] = []
    for chunk in text.replace(";", " ").split():
        if "=" in chunk or not out:
            out.append(chunk)
        else:  # a value with spaces, e.g. "[0.1, 0.2]": glue it back on
            out[-1] += " " + chunk
    return out


def settings_hash(*sections: Any) -> str:
    """A short stable hash of settings, used in output paths so changed settings rerun."""
    blob = json.dumps(sections, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:10]

"""The one configuration path: defaults -> YAML in ``configs/`` -> overrides -> dataclasses.

* Defaults live in one place, the settings dataclasses (``extractors.settings.ExtractSettings``
  and ``hamnet.config``'s ``ModelConfig``, ``LossConfig``, ``TrainConfig``, ``LocalizeConfig``,
  ``EvaluateConfig``); :func:`default_config` lays them out as the six YAML sections.
* A config file (``configs/thumos14.yaml``, or any path) sets only what differs, optionally on
  top of other files named in an explicit ``inherit:`` list (read in order, later values win
  key by key). Nothing else is merged in behind the user's back.
* Overrides from any command line (``--overrides "train.epochs=5 extract.crop=112"``) are
  parsed by :func:`parse_overrides` and applied by :func:`apply_override`.

Every step is strict: a key the defaults do not define is an error naming the file or override
(a typo such as ``train.epoch`` fails loudly instead of being ignored), and
:func:`validate_config` checks every value before any work starts. docs/configuration.md lists
every key.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from extractors.settings import ExtractSettings
from hamnet.config import (
    EvaluateConfig,
    LocalizeConfig,
    LossConfig,
    ModelConfig,
    TrainConfig,
    hamnet_settings,
)
from pipeline.report_config import ReportConfig

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


def default_config() -> dict[str, Any]:
    """Every setting at its default: the one place defaults live is the settings dataclasses.

    ``hamnet-config --config demo`` prints a resolved config in this shape; docs/configuration.md
    explains each key.
    """
    return {
        "extract": ExtractSettings().to_dict(),
        "model": ModelConfig().to_dict(),
        "loss": LossConfig().to_dict(),
        "train": TrainConfig().to_dict(),
        "localize": LocalizeConfig().to_dict(),
        "evaluate": EvaluateConfig().to_dict(),
        "report": ReportConfig().to_dict(),
    }


def load_config(name: str | os.PathLike, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The defaults, updated by the named config file (and the files it inherits), then ``overrides``.

    Every level is strict: a key the defaults do not define is an error naming the file or
    override. Values are checked by :func:`validate_config`'s dataclasses when a stage reads them.
    """
    cfg = merge(default_config(), _load_file(resolve_config_path(name), seen=()), strict=True, where=str(name))
    for item in overrides:
        apply_override(cfg, item)
    return cfg


def load_config_cached(name: str, overrides: str) -> dict[str, Any]:
    """:func:`load_config` + :func:`validate_config`, memoised until a config file changes.

    Luigi asks every task for its settings many times while it builds the graph (once per
    ``output()``/``requires()`` call); reading YAML each time costs seconds on big datasets.
    A copy is returned so a caller cannot change the memoised settings.
    """
    return copy.deepcopy(_load_validated(name, overrides, _mtimes(name)))


@functools.lru_cache(maxsize=64)
def _load_validated(name: str, overrides: str, _mtimes: tuple) -> dict[str, Any]:
    cfg = load_config(name, parse_overrides(overrides))
    validate_config(cfg)
    return cfg


def _mtimes(name: str) -> tuple:
    """Modification times of the named file and every YAML beside it (its possible bases)."""
    try:
        path = resolve_config_path(name)
    except ConfigError:
        return ()
    files = {path.resolve(), *(f.resolve() for f in path.parent.glob("*.yaml"))}
    return tuple(sorted((str(f), f.stat().st_mtime_ns) for f in files if f.exists()))


def validate_config(cfg: Mapping[str, Any]) -> None:
    """Build every settings dataclass from ``cfg`` so a bad value fails now, naming its key.

    Callers run this before any expensive work (the Luigi tasks when they are built), so
    ``train.epochs=abc`` is reported in a second, not after hours of extraction.
    """
    _check_number_types(cfg, default_config(), "")
    try:
        ExtractSettings.from_dict(cfg["extract"])
        hamnet_settings(cfg)
        EvaluateConfig.from_dict(cfg["evaluate"])
        ReportConfig.from_dict(cfg["report"])
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from e


def _check_number_types(cfg: Mapping[str, Any], defaults: Mapping[str, Any], prefix: str) -> None:
    """A setting whose default is a number must be a number: ``extract.crop=abc`` is named here.

    (Some dataclasses compare values before checking their type, which would otherwise surface
    as "'<' not supported between 'str' and 'int'" without the key.)
    """
    for key, default in defaults.items():
        if key not in cfg:
            continue
        value, name = cfg[key], f"{prefix}{key}"
        if isinstance(default, Mapping) and isinstance(value, Mapping):
            _check_number_types(value, default, name + ".")
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                kind = "an integer" if isinstance(default, int) else "a number"
                raise ConfigError(f"{name} must be {kind}, got {value!r}")


def _load_file(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """One config file merged over the files its ``inherit:`` list names (paths relative to it)."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: circular inherit chain {[str(p) for p in seen]}")
    try:
        data = _yaml(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    bases = data.pop("inherit", []) or []
    if isinstance(bases, str):
        bases = [bases]
    merged: dict[str, Any] = {}
    for b in bases:
        base_path = path.parent / b
        if not base_path.is_file():
            raise ConfigError(f"{path}: inherited file {b!r} not found (looked at {base_path})")
        merged = merge(merged, _load_file(base_path, seen + (path,)), strict=False, where=str(path))
    return merge(merged, data, strict=False, where=str(path))


def merge(base: Mapping[str, Any], update: Mapping[str, Any], *, strict: bool, where: str) -> dict[str, Any]:
    """Return ``base`` updated by ``update``, recursing into nested mappings.

    With ``strict``, ``update`` may only set keys that ``base`` defines, at every level, so that a
    misspelt setting is reported instead of silently ignored. Only the keys given change: a
    dataset file may set ``extract.tvl1.nscales`` alone and keep the base's other TV-L1 values.
    """
    out = copy.deepcopy(dict(base))
    for key, val in update.items():
        if strict and key not in out:
            raise ConfigError(f"{where}: unknown setting {key!r}{_did_you_mean(key, out)} (known: {sorted(out)})")
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
            hint = _did_you_mean(part, node, prefix=".".join(parts[:i])) if isinstance(node, dict) else ""
            raise ConfigError(f"override {item!r}: unknown section {'.'.join(parts[: i + 1])!r}{hint}")
        node = node[part]
    if not isinstance(node, dict) or parts[-1] not in node:
        hint = _did_you_mean(parts[-1], node, prefix=".".join(parts[:-1])) if isinstance(node, dict) else ""
        raise ConfigError(f"override {item!r}: unknown setting {key!r}{hint}")
    try:
        node[parts[-1]] = _yaml(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({e})") from e


def _did_you_mean(key: str, known: Iterable[str], prefix: str = "") -> str:
    """``; did you mean 'train.epochs'?`` for the closest known key, or "" when none is close."""
    import difflib

    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1, cutoff=0.6)
    return f"; did you mean {(prefix + '.' if prefix else '') + close[0]!r}?" if close else ""


def parse_overrides(text: str | Sequence[str] | None) -> list[str]:
    """Split override text into ``section.key=value`` items: the one parser of every command line.

    Items are separated by whitespace or ``;`` outside brackets, braces and quotes, so list and
    mapping values may contain spaces: ``"train.epochs=5 localize.attention_thresholds=[0.1, 0.2]"``.
    A sequence (a repeated ``--overrides`` flag) is parsed item by item and concatenated.
    Raises :class:`ConfigError` for an item without ``=`` or with unbalanced brackets/quotes.
    """
    if text is None:
        return []
    if not isinstance(text, str):
        return [item for chunk in text for item in parse_overrides(chunk)]
    items: list[str] = []
    cur: list[str] = []
    depth, quote = 0, ""
    for ch in text + " ":
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"overrides {text!r}: unbalanced {ch!r}")
        elif (ch.isspace() or ch == ";") and depth == 0:
            if cur:
                items.append("".join(cur))
                cur = []
            continue
        cur.append(ch)
    if depth or quote:
        raise ConfigError(f"overrides {text!r}: unclosed {'quote' if quote else 'bracket'}")
    for item in items:
        key = item.split("=", 1)[0]
        if "=" not in item or not key or any(c.isspace() for c in key):
            raise ConfigError(
                f"override {item!r} must look like section.key=value (e.g. train.epochs=5); "
                "separate several with spaces, and quote a value that contains spaces"
            )
    return items

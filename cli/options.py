"""Options every command line shares, so each spells them the same way and fails the same way.

``--config NAME|PATH`` picks the YAML config, ``--overrides "section.key=value ..."`` changes
settings (the Luigi tasks take the same ``--overrides`` string), and ``--quiet`` turns
progress bars off. Both parsing and error messages come from :mod:`pipeline.config`.
"""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.config import load_config, parse_overrides, validate_config


def add_config_options(parser: argparse.ArgumentParser, default_config: str = "thumos14") -> None:
    parser.add_argument(
        "--config",
        default=default_config,
        help=f"config name in configs/ or a YAML path (default {default_config}); docs/configuration.md",
    )
    add_overrides_option(parser)


def add_overrides_option(
    parser: argparse.ArgumentParser, example: str = "train.epochs=5 loss.drop_mode=random"
) -> None:
    parser.add_argument(
        "--overrides",
        action="append",
        default=[],
        metavar='"KEY=VALUE ..."',
        help=f'settings to change, e.g. --overrides "{example}" (YAML values; repeatable)',
    )


def add_quiet_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def overrides_from(args: argparse.Namespace) -> list[str]:
    """The ``section.key=value`` items of every ``--overrides`` flag given."""
    return parse_overrides(args.overrides)


def config_from(args: argparse.Namespace) -> dict[str, Any]:
    """The validated settings named by ``--config`` and ``--overrides``."""
    cfg = load_config(args.config, overrides_from(args))
    validate_config(cfg)
    return cfg

"""``hamnet-config``: print the resolved settings of a config, after overrides, as YAML.

The output is a complete config file (every key, defaults included) that can be saved and
passed back with ``--config``; values are validated first, so a bad override fails here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import yaml

from cli.options import add_config_options, config_from
from pipeline.config import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hamnet-config", description=__doc__.split("\n\n")[0])
    add_config_options(p)
    args = p.parse_args(argv)
    try:
        cfg = config_from(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None))
    return 0


if __name__ == "__main__":
    sys.exit(main())

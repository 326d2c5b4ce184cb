"""``python -m extractors``: kept for existing scripts; the command lives in :mod:`cli.extract`.

An entry-point shim, the one kind of module allowed to import upwards (docs/architecture.md):
nothing imports it, so the extractors package itself still depends on nothing above it.
"""

import sys

from cli.extract import main

if __name__ == "__main__":
    sys.exit(main())

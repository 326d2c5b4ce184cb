"""Luigi tasks of the pipeline (``luigi --module tasks RunAll --local-scheduler``).

Importing this package adds ``configs/luigi.cfg`` to Luigi's configuration as the lowest
priority file, so the plain command gets the shipped settings (exit codes that report failed
tasks, the ``gpu`` resource) while a ``luigi.cfg`` in the working directory or
``LUIGI_CONFIG_PATH`` can still override them.

The tasks are thin shells over library functions (pipeline/, extractors/, hamnet/); nothing
imports from here. See docs/pipeline.md.
"""

from __future__ import annotations

from pathlib import Path

from luigi.configuration import LuigiConfigParser

SHIPPED_LUIGI_CFG = Path(__file__).resolve().parent.parent / "configs" / "luigi.cfg"


def _add_shipped_config() -> None:
    # luigi.configuration.add_config_path would append, i.e. give our file the HIGHEST
    # priority over the user's own luigi.cfg; prepend instead so users can override it.
    paths = LuigiConfigParser._config_paths
    if str(SHIPPED_LUIGI_CFG) not in paths and SHIPPED_LUIGI_CFG.is_file():
        paths.insert(0, str(SHIPPED_LUIGI_CFG))
        LuigiConfigParser.reload()


_add_shipped_config()

from tasks.common import PipelineTask  # noqa: E402
from tasks.dataset import Evaluate, FeatureIndex, Localize, Report, RunAll, Train, VideosFailed  # noqa: E402
from tasks.export import ExportFeatures  # noqa: E402
from tasks.shards import FeatureShard, FlowCache, FlowShard, VideoFeatures, shards  # noqa: E402
from tasks.videos import MakeDemo  # noqa: E402

__all__ = [
    "PipelineTask",
    "MakeDemo",
    "FlowCache",
    "VideoFeatures",
    "FlowShard",
    "FeatureShard",
    "shards",
    "FeatureIndex",
    "Train",
    "Localize",
    "Evaluate",
    "Report",
    "RunAll",
    "VideosFailed",
    "ExportFeatures",
]

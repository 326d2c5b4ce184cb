"""Which videos a run trains on, and with which labels."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from pipeline.videos import map_to_ids
from storage.labels import class_list, read_labels_csv

log = logging.getLogger("hamnet.pipeline")


def training_labels(
    labels_csv: str | os.PathLike, videos: Mapping[str, str], ok: Mapping[str, Any]
) -> tuple[dict[str, list[str]], list[str]]:
    """``({video id: labels}, classes)`` of the labelled videos that were extracted.

    The classes are those of every labelled video in the directory, so a class whose only
    video failed extraction still has an output (and the checkpoint's class list does not
    depend on which videos happened to fail). Labels naming videos that are not in the
    directory, and labelled videos whose extraction failed, are logged as warnings.
    """
    labels, unmatched = map_to_ids(read_labels_csv(labels_csv), videos)
    if unmatched:
        log.warning("%d labelled videos are not in the video directory (ignored): %s", len(unmatched), unmatched[:10])
    failed = sorted(set(labels) - set(ok))
    if failed:
        log.warning("%d labelled videos failed extraction and are left out of training: %s", len(failed), failed)
    return {v: labs for v, labs in labels.items() if v in ok}, class_list(labels)

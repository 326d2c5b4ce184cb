"""Which torch device a stage runs on."""

from __future__ import annotations

import re

DEVICES = ("auto", "cpu", "cuda")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_name(name: str, setting: str) -> str:
    """Validate a device setting (``auto``, ``cpu``, ``cuda`` or ``cuda:N``) without touching CUDA.

    Config validation calls this; it must not initialise CUDA, because Luigi forks its workers
    after the tasks are built and a CUDA context does not survive a fork.
    """
    if not isinstance(name, str) or not _DEVICE_RE.match(name):
        raise ValueError(f"{setting} must be auto, cpu, cuda or cuda:N, got {name!r}")
    return name


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``. Called at run time only.

    An explicit ``cuda`` without a usable GPU is an error here rather than a crash deep inside
    the first forward pass.
    """
    name = check_device_name(str(name), "device")
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
    return name

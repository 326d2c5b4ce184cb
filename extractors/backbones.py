"""RGB-only video backbones from torchvision and pytorchvideo: input contracts, building, weights.

Two-stream Inception-v1 I3D (extractors/i3d.py) stays the default and the only choice that
reproduces the paper's numbers. The backbones here need no optical flow, so extraction skips
TV-L1 (93 % of the CPU time of two-stream extraction) entirely.

Each backbone is the library's own constructor (``weights=None`` / ``pretrained=False``;
nothing is ever downloaded) plus an :class:`InputContract` copied from what the library
publishes for its Kinetics-400 weights (docs/extraction.md has the table and the sources):

* torchvision: ``<Weights>.KINETICS400_V1.transforms()`` (resize, crop, mean, std) and
  ``.meta`` (``frame_rate``, ``clip_len`` of the published accuracy, ``min_temporal_size``);
* pytorchvideo: the hub constructors (clip length and crop are baked into the head's pool:
  ``slow_r50`` (8, 7, 7) = 8 frames at 224 px, ``x3d_m`` ``input_clip_length=16``,
  ``input_crop_size=224``), the model-zoo file names (``SLOW_8x8_R50`` = 8 frames taken every
  8th frame of 30 fps video; X3D-M 16x5) and ``create_video_transform(mode="val")`` (short
  side 256, centre crop 224, mean 0.45, std 0.225). ``pytorchvideo.transforms`` itself does not
  import with torchvision >= 0.17 (it needs the removed ``functional_tensor``), so nothing of
  it is imported; ``pytorchvideo.models.hub`` imports cleanly.

The feature of a clip is the input of the model's final classifier (the layer that maps to the
400 Kinetics classes), computed by the library's own forward with the classifier removed and a
fixed-size average pool made global (identical at the published input size, and it lets demos
and tests use small frames). Tests check ``classifier(feature) == model(clip)`` on the
unmodified library model.

This module imports no torch at import time: settings only need the contracts.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

KINETICS_MEAN_TV = (0.43216, 0.394666, 0.37645)  # torchvision's VideoClassification default
KINETICS_STD_TV = (0.22803, 0.22145, 0.216989)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PTV_MEAN = (0.45, 0.45, 0.45)  # pytorchvideo create_video_transform defaults
PTV_STD = (0.225, 0.225, 0.225)


@dataclass(frozen=True)
class InputContract:
    """What one clip given to the network looks like.

    ``frames`` frames taken ``1 / sample_fps`` seconds apart, centred on the snippet's centre;
    each resized (``resize`` = (short side,) keeping the aspect, or (height, width) exactly as
    torchvision's ``VideoClassification`` does with two numbers), centre-cropped to ``crop``,
    scaled to [0, 1] and normalised with ``mean``/``std`` per RGB channel.
    """

    frames: int
    sample_fps: float
    resize: tuple[int, ...]
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["resize"] = list(self.resize)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @property
    def clip_seconds(self) -> float:
        """Time one clip spans (first frame's start to last frame's end)."""
        return self.frames / self.sample_fps


@dataclass(frozen=True)
class BackboneSpec:
    """One RGB-only backbone: where it comes from, its contract, its feature and its weights."""

    name: str
    library: str  # "torchvision" | "pytorchvideo"
    constructor: str  # module:function
    feature_dim: int
    feature_layer: str
    contract: InputContract
    classifier_key: str  # weight whose first dimension is the class count
    checkpoint_file: str
    checkpoint_url: str
    source: str  # where the contract's numbers were read

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "library": self.library,
            "feature_dim": self.feature_dim,
            "contract": self.contract.to_dict(),
        }


_TV = "https://download.pytorch.org/models"
_PTV = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics"

SPECS: dict[str, BackboneSpec] = {
    s.name: s
    for s in (
        BackboneSpec(
            "s3d",
            "torchvision",
            "torchvision.models.video:s3d",
            1024,
            "global average of `features` (the input of `classifier`, a 1x1x1 conv to 400 classes)",
            # meta: frame_rate=15, min_temporal_size=14; the published accuracy uses 128-frame
            # clips, too long for a localization feature: 16 frames (>= 14) at 15 fps instead.
            InputContract(16, 15.0, (256, 256), 224, KINETICS_MEAN_TV, KINETICS_STD_TV),
            "classifier.1.weight",
            "s3d-d76dad2f.pth",
            f"{_TV}/s3d-d76dad2f.pth",
            "S3D_Weights.KINETICS400_V1.transforms() and .meta (frame_rate=15, clip_len=128, min_temporal_size=14)",
        ),
        BackboneSpec(
            "swin3d_t",
            "torchvision",
            "torchvision.models.video:swin3d_t",
            768,
            "average of the final `norm` tokens (the input of `head`, Linear 768 -> 400)",
            InputContract(32, 15.0, (256,), 224, IMAGENET_MEAN, IMAGENET_STD),
            "head.weight",
            "swin3d_t-7615ae03.pth",
            f"{_TV}/swin3d_t-7615ae03.pth",
            "Swin3D_T_Weights.KINETICS400_V1.transforms() and .meta (frame_rate=15, clip_len=32)",
        ),
        BackboneSpec(
            "r2plus1d_18",
            "torchvision",
            "torchvision.models.video:r2plus1d_18",
            512,
            "`avgpool` output (the input of `fc`, Linear 512 -> 400)",
            InputContract(16, 15.0, (128, 171), 112, KINETICS_MEAN_TV, KINETICS_STD_TV),
            "fc.weight",
            "r2plus1d_18-91a641e6.pth",
            f"{_TV}/r2plus1d_18-91a641e6.pth",
            "R2Plus1D_18_Weights.KINETICS400_V1.transforms() and .meta (frame_rate=15, clip_len=16)",
        ),
        BackboneSpec(
            "slow_r50",
            "pytorchvideo",
            "pytorchvideo.models.hub:slow_r50",
            2048,
            "global average of the last ResNet stage (the input of `blocks.5.proj`, Linear 2048 -> 400)",
            InputContract(8, 30.0 / 8, (256,), 224, PTV_MEAN, PTV_STD),
            "blocks.5.proj.weight",
            "SLOW_8x8_R50.pyth",
            f"{_PTV}/SLOW_8x8_R50.pyth",
            "hub slow_r50 (head pool 8x7x7), model zoo SLOW_8x8_R50 (8 frames, every 8th at 30 fps), "
            "create_video_transform(mode='val')",
        ),
        BackboneSpec(
            "i3d_r50",
            "pytorchvideo",
            "pytorchvideo.models.hub:i3d_r50",
            2048,
            "global average of the last ResNet stage (the input of `blocks.5.proj`, Linear 2048 -> 400)",
            InputContract(8, 30.0 / 8, (256,), 224, PTV_MEAN, PTV_STD),
            "blocks.5.proj.weight",
            "I3D_8x8_R50.pyth",
            f"{_PTV}/I3D_8x8_R50.pyth",
            "hub i3d_r50 (head pool 4x7x7 after the 2x temporal stage-1 pool = 8 frames at 224 px), "
            "model zoo I3D_8x8_R50, create_video_transform(mode='val')",
        ),
        BackboneSpec(
            "x3d_m",
            "pytorchvideo",
            "pytorchvideo.models.hub:x3d_m",
            2048,
            "`post_conv` output of the projected pool, globally averaged (the input of `blocks.5.proj`)",
            InputContract(16, 30.0 / 5, (256,), 224, PTV_MEAN, PTV_STD),
            "blocks.5.proj.weight",
            "X3D_M.pyth",
            f"{_PTV}/X3D_M.pyth",
            "hub x3d_m (input_clip_length=16, input_crop_size=224), model zoo X3D_M 16x5, "
            "create_video_transform(mode='val')",
        ),
    )
}

RGB_ONLY_BACKBONES = tuple(SPECS)
TWO_STREAM_I3D_DIM = 2 * 1024  # RGB + flow Inception-v1 I3D, concatenated


def get_spec(name: str) -> BackboneSpec:
    if name not in SPECS:
        raise ValueError(f"unknown RGB-only backbone {name!r} (known: {sorted(SPECS)})")
    return SPECS[name]


def is_rgb_only(backbone: str) -> bool:
    return backbone in SPECS


def joint_feature_dim(backbone: str) -> int:
    """Width of one feature row HAM-Net sees: 2048 for two-stream I3D, the backbone's width else."""
    return get_spec(backbone).feature_dim if is_rgb_only(backbone) else TWO_STREAM_I3D_DIM


def effective_contract(settings: Any) -> InputContract:
    """The contract used for ``settings``: the published one for real weights.

    Random weights have no published contract to honour; their frames follow the settings'
    ``resize_short``/``crop`` (short-side resize) so demos and tests can use small frames.
    Clip length, sampling rate and normalisation stay the backbone's own either way.
    """
    c = get_spec(settings.backbone).contract
    if settings.random_backbone:
        return InputContract(c.frames, c.sample_fps, (int(settings.resize_short),), int(settings.crop), c.mean, c.std)
    return c


# ---- building (torch from here on, imported lazily) -----------------------------------------


def _constructor(spec: BackboneSpec):
    import importlib
    import warnings

    module, func = spec.constructor.split(":")
    with warnings.catch_warnings():
        # pytorchvideo's hub package runs torch.jit.script at import (a FutureWarning on torch
        # 2.x that says nothing about this use).
        warnings.simplefilter("ignore", FutureWarning)
        return getattr(importlib.import_module(module), func)


def build_library_model(name: str, num_classes: int = 400, **kwargs: Any):
    """The library's own network with its classifier, untrained (``weights=None`` /
    ``pretrained=False``), in eval mode. ``kwargs`` go to the constructor (tests shrink models)."""
    spec = get_spec(name)
    ctor = _constructor(spec)
    if spec.library == "torchvision":
        model = ctor(weights=None, num_classes=num_classes, **kwargs)
    else:
        model = ctor(pretrained=False, model_num_class=num_classes, **kwargs)
    return model.eval()


def to_feature_model(name: str, model):
    """Turn a library model into one whose forward returns the classifier's input [B, D].

    Edits ``model`` in place (after weights are loaded): the classifier becomes the identity
    (or is skipped), a fixed-size average pool becomes global, dropout and the X3D head's
    softmax are removed.
    """
    from torch import nn

    spec = get_spec(name)
    if name == "s3d":
        model.avgpool = nn.AdaptiveAvgPool3d(1)
        model.classifier = nn.Identity()
    elif name == "swin3d_t":
        model.head = nn.Identity()
    elif name == "r2plus1d_18":
        model.fc = nn.Identity()
    elif spec.library == "pytorchvideo":
        head = model.blocks[-1]
        head.proj, head.activation, head.dropout = None, None, None
        if isinstance(head.pool, nn.AvgPool3d):
            head.pool = nn.AdaptiveAvgPool3d(1)
        elif isinstance(getattr(head.pool, "pool", None), nn.AvgPool3d):  # X3D's ProjectedPool
            head.pool.pool = nn.AdaptiveAvgPool3d(1)
    else:  # pragma: no cover - every spec is handled above
        raise ValueError(f"no feature head rule for {name!r}")
    return model.eval()


class RGBBackbone:
    """A feature model plus its spec; ``features(x)`` maps a normalised clip batch
    [B, 3, T, H, W] to [B, feature_dim] (the interface I3D has, so runners treat both alike)."""

    def __init__(self, name: str, net):
        self.name, self.spec, self.net = name, get_spec(name), net

    def to(self, device):
        self.net = self.net.to(device)
        return self

    def eval(self):
        self.net.eval()
        return self

    def features(self, x):
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"{self.name} expects [B, 3, T, H, W], got {tuple(x.shape)}")
        out = self.net(x)
        return out.flatten(1)


def seeded_init(model, seed: int):
    """Re-initialise ``model`` deterministically from ``seed`` (the global RNG is untouched).

    The libraries' own initialisations are made for training, not for random features:
    pytorchvideo zeroes the last BatchNorm of every residual block (all snippets then give the
    same feature) and torchvision's S3D default init shrinks activations to ~1e-8. He-normal
    weights and identity normalisation layers keep every layer's output dependent on the input.
    """
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm)):
                if m.weight is not None:
                    m.weight.fill_(1.0)
                    m.bias.zero_()
    return model.eval()


def random_rgb_backbone(name: str, seed: int) -> RGBBackbone:
    """The library's network with seeded random weights (:func:`seeded_init`): for demos and
    tests only, its features mean nothing."""
    return RGBBackbone(name, to_feature_model(name, seeded_init(build_library_model(name), seed)))


def load_rgb_checkpoint(name: str, path: str | os.PathLike) -> RGBBackbone:
    """Build ``name`` and load a published weights file into it (``weights_only=True``).

    Accepts torchvision's plain state dicts and pytorchvideo's ``{"model_state": ...}`` files.
    Any missing, unexpected or mis-shaped tensor is a CheckpointError listing them (only
    ``num_batches_tracked`` is ignored). The class count is read from the classifier.
    """
    from extractors.checkpoints import CheckpointError, check_state_fits, read_state_dict

    spec = get_spec(name)
    state = {k: v for k, v in read_state_dict(path).items() if not k.endswith("num_batches_tracked")}
    w = state.get(spec.classifier_key)
    num_classes = int(w.shape[0]) if w is not None and w.ndim >= 2 else 400
    model = build_library_model(name, num_classes)
    problems = check_state_fits(state, model)
    if problems:
        raise CheckpointError(
            f"{path}: does not fit {spec.library} {name} (expected {spec.checkpoint_file} or a file in its "
            f"layout, keys like {spec.classifier_key}); " + problems
        )
    model.load_state_dict(state, strict=False)  # strict minus num_batches_tracked, checked above
    return RGBBackbone(name, to_feature_model(name, model))


def build_rgb_backbone(settings: Any) -> RGBBackbone:
    """The backbone for ``settings``: its checkpoint, or the seeded random one; refuses to guess."""
    from extractors.checkpoints import CheckpointError

    if settings.random_backbone:
        return random_rgb_backbone(settings.backbone, settings.random_seed)
    if not settings.rgb_checkpoint:
        spec = get_spec(settings.backbone)
        raise CheckpointError(
            f"no weights for backbone {settings.backbone!r} (extract.rgb_checkpoint unset). Pass the published "
            f"Kinetics file {spec.checkpoint_file} ({spec.checkpoint_url}; see docs/extraction.md), "
            "or set random_backbone for a demo with meaningless features."
        )
    return load_rgb_checkpoint(settings.backbone, settings.rgb_checkpoint)

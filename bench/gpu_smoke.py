"""GPU smoke check: the CUDA code paths give the same answers as the CPU ones.

    python -m bench.gpu_smoke            (on a machine with CUDA; needs torch, numpy only)

1. HAM-Net: train on a planted-segment feature set on CUDA and on CPU with the same seed and
   settings, localize on each device, and print mAP@{0.1,0.3,0.5,0.7} for both (the two runs
   differ only by floating-point order, so the mAPs should be close, not bit-equal).
2. I3D: features of the same random clip on CPU fp32 and CUDA fp32 (max relative deviation).
3. PyTorch TV-L1: CPU and CUDA flow on the same synthetic pairs (mean end-point difference).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from extractors.i3d import build_i3d
from extractors.tvl1_torch import tvl1_flow_batch
from hamnet.config import LocalizeConfig, LossConfig, ModelConfig, TrainConfig
from hamnet.evaluate import evaluate_detection
from hamnet.localize import localize_videos
from hamnet.results import results_to_dict
from hamnet.train import train_hamnet
from tests.hamnet_synth import planted_dataset

ROOT = Path(__file__).resolve().parent.parent


def hamnet_on(device: str, tmp: Path) -> tuple[list[float], float]:
    f, l, classes, _, protos = planted_dataset(40, seed=0)
    ft, _, _, gt, _ = planted_dataset(20, seed=100, prefix="test", subset="test", prototypes=protos)
    mcfg = ModelConfig(feature_dim=64, hidden_dim=64, attention_hidden=32, dropout=0.5)
    tcfg = TrainConfig(lr=5e-4, batch_size=10, epochs=25, num_snippets=100, seed=0, device=device)
    t0 = time.perf_counter()
    ckpt = train_hamnet(
        f,
        l,
        classes,
        model_cfg=mcfg,
        loss_cfg=LossConfig(),
        train_cfg=tcfg,
        checkpoint_path=tmp / f"{device}.pt",
        progress=False,
    )
    locs = localize_videos(ckpt, ft, LocalizeConfig(), progress=False, device=device)
    secs = time.perf_counter() - t0
    res = evaluate_detection(
        gt, results_to_dict({v: r.segments for v, r in locs.items()}, "smoke"), [0.1, 0.3, 0.5, 0.7]
    )
    return [round(float(m), 4) for m in res.map], secs


def main() -> None:
    assert torch.cuda.is_available(), "this smoke check needs CUDA"
    print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
    with tempfile.TemporaryDirectory() as d:
        for dev in ("cuda", "cpu"):
            maps, secs = hamnet_on(dev, Path(d))
            print(f"HAM-Net planted set, trained+localized on {dev}: mAP@0.1/0.3/0.5/0.7 = {maps} ({secs:.1f} s)")

    torch.manual_seed(0)
    for name, ch in (("rgb", 3), ("flow", 2)):
        model = build_i3d(ch).eval()
        x = torch.rand(2, ch, 16, 224, 224) * 2 - 1
        with torch.inference_mode():
            cpu = model.features(x)
            gpu = model.cuda().features(x.cuda()).cpu()
        dev = ((gpu - cpu).abs().max() / cpu.abs().max()).item()
        print(f"I3D {name}: CUDA vs CPU fp32 features, max relative deviation {dev:.2e}")

    rng = np.random.default_rng(0)
    base = (rng.random((8, 120, 120)) * 255).astype(np.float32)
    import torch.nn.functional as F

    smooth = F.avg_pool2d(torch.from_numpy(base)[:, None], 5, 1, 2)[:, 0].numpy()
    prev = smooth[:, 10:106, 10:106].astype(np.uint8)
    nxt = smooth[:, 12:108, 9:105].astype(np.uint8)  # content moves by (+1, -2) px
    t0 = time.perf_counter()
    fc = tvl1_flow_batch(prev, nxt, None, device="cpu")
    t1 = time.perf_counter()
    fg = tvl1_flow_batch(prev, nxt, None, device="cuda")
    t2 = time.perf_counter()
    epe = np.linalg.norm(fc - fg, axis=-1)
    print(
        f"TV-L1 CPU vs CUDA on 8 pairs 96x96: mean EPD {epe.mean():.4f} px, max {epe.max():.4f} px; "
        f"median flow CPU {np.median(fc[:, 20:-20, 20:-20], axis=(0, 1, 2))}, "
        f"CUDA {np.median(fg[:, 20:-20, 20:-20], axis=(0, 1, 2))}; {t1 - t0:.1f} s vs {t2 - t1:.1f} s"
    )


if __name__ == "__main__":
    main()

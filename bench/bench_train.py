"""HAM-Net training-iteration time at the THUMOS setting, next to the machine's matmul peak.

One iteration = forward of the full model on a batch of 20 videos x 500 snippets x 2048-D,
the six losses, backward and an Adam step (exactly what ``hamnet.train`` does per batch).
FLOPs are counted from the convolution shapes: forward 2*B*T*Cin*Cout*k per conv; backward
the same again for weight gradients and again for input gradients, except the two first
convolutions, whose input (the features) needs no gradient. Element-wise work and the Adam
update are not counted (they are memory-bound and small next to the convolutions).

The peak is measured in the same run: a square float32 matmul timed on the same device.
The ratio achieved/peak is what to compare between machines; absolute times on a shared
machine are noisy.

    python -m bench.bench_train                    # CPU, THUMOS setting
    python -m bench.bench_train --device cuda      # GPU
    python -m bench.bench_train --iters 3 --batch 20 --snippets 500 --feature-dim 2048
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hamnet.config import LossConfig, ModelConfig
from hamnet.losses import hamnet_losses
from hamnet.model import build_hamnet


def conv_flops(B: int, T: int, cfg: ModelConfig, num_classes: int) -> tuple[float, float]:
    """(forward FLOPs, forward+backward FLOPs) of the network's convolutions."""
    D, H, A, C1 = cfg.feature_dim, cfg.hidden_dim, cfg.attention_hidden, num_classes + 1
    layers = [
        (D, H, 3, True),
        (H, H, 3, False),
        (H, C1, 1, False),  # classifier (first: input needs no grad)
        (D, A, 3, True),
        (A, A, 3, False),
        (A, 1, 1, False),
    ]  # attention
    fwd = bwd = 0.0
    for cin, cout, k, first in layers:
        f = 2.0 * B * T * cin * cout * k
        fwd += f
        bwd += f if first else 2 * f
    return fwd, fwd + bwd


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, n: int, reps: int) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    (a @ b).sum().item()  # warm-up
    times = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        c = a @ b
        sync(device)
        times.append(time.perf_counter() - t)
    del c
    return 2.0 * n**3 / min(times) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--snippets", type=int, default=500)
    p.add_argument("--feature-dim", type=int, default=2048)
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--iters", type=int, default=None, help="timed iterations (default 3 on CPU, 20 on CUDA)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--matmul-n", type=int, default=None, help="matmul size for the peak (default 2048 CPU, 8192 CUDA)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda given but no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    iters = args.iters or (20 if device.type == "cuda" else 3)
    n = args.matmul_n or (8192 if device.type == "cuda" else 2048)
    torch.backends.cuda.matmul.allow_tf32 = False  # count honest float32 throughput
    torch.backends.cudnn.allow_tf32 = False

    mcfg = ModelConfig(feature_dim=args.feature_dim, hidden_dim=args.feature_dim)
    torch.manual_seed(0)
    model = build_hamnet(mcfg, args.classes).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-5, weight_decay=1e-3)
    x = torch.randn(args.batch, args.snippets, args.feature_dim, device=device).abs()
    y = torch.zeros(args.batch, args.classes, device=device)
    y[torch.arange(args.batch), torch.arange(args.batch) % args.classes] = 1
    lcfg = LossConfig()

    def step() -> float:
        sync(device)
        t = time.perf_counter()
        logits, att = model(x)
        loss = hamnet_losses(logits, att, y, lcfg)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        return time.perf_counter() - t

    peak_before = matmul_peak(device, n, reps=3)
    for _ in range(args.warmup):
        step()
    times = [step() for _ in range(iters)]
    peak_after = matmul_peak(device, n, reps=3)
    peak = max(peak_before, peak_after)

    fwd, total = conv_flops(args.batch, args.snippets, mcfg, args.classes)
    med = statistics.median(times)
    achieved = total / med / 1e9
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}")
    print(
        f"setting: batch {args.batch} x {args.snippets} snippets x {args.feature_dim}-D, {args.classes} classes, "
        f"full model ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters)"
    )
    print(f"FLOPs per iteration: forward {fwd / 1e9:.1f} G, forward+backward {total / 1e9:.1f} G")
    print(f"iteration time: median {med:.3f} s over {iters} (min {min(times):.3f}, max {max(times):.3f})")
    print(f"matmul {n}x{n} float32 peak: {peak:.1f} GFLOP/s (before {peak_before:.1f}, after {peak_after:.1f})")
    print(f"achieved: {achieved:.1f} GFLOP/s = {achieved / peak:.2f} of the matmul peak")
    print(
        f"one THUMOS epoch (200 videos = {-(-200 // args.batch)} iterations): {med * -(-200 // args.batch):.1f} s; "
        f"100 epochs: {med * -(-200 // args.batch) * 100 / 3600:.2f} h"
    )


if __name__ == "__main__":
    main()

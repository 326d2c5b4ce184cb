"""I3D throughput per stream, batch size and precision, and the precision's feature error.

    python -m bench.bench_i3d [--device cpu|cuda] [--crop 224] [--batch-sizes 1,8,32] [--iters 5]

Needs only torch (no video decoding), so it runs on a bare GPU machine. Weights are a seeded
random initialisation: the cost of a forward pass does not depend on the weight values, so the
snippets/s are those of the real Kinetics checkpoints; the features themselves are meaningless.
For each stream (RGB: 3 channels, flow: 2) and batch size it prints snippets/s (one snippet =
16 frames x crop x crop) and, for bf16/fp16, the largest relative deviation of the 1024-D
features from fp32 on the same input (max |f - f32| / max |f32|).
"""

from __future__ import annotations

import argparse
import time

import torch

from extractors.i3d import build_i3d


def timed(fn, device: torch.device, iters: int) -> float:
    """Median seconds of ``fn()`` over ``iters`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--iters", type=int, default=3)
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    print(
        f"device {device} ({torch.cuda.get_device_name(0) if device.type == 'cuda' else 'cpu'}), "
        f"torch {torch.__version__}, crop {args.crop}, threads {torch.get_num_threads()}"
    )
    print(f"{'stream':6} {'batch':>5} {'precision':>9} {'s/batch':>9} {'snippets/s':>11} {'max rel dev vs fp32':>20}")
    for stream, channels in (("rgb", 3), ("flow", 2)):
        model = build_i3d(channels).to(device).eval()
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            x = torch.rand(bs, channels, 16, args.crop, args.crop, device=device) * 2 - 1
            ref = None
            for prec in args.precisions.split(","):
                dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[prec]

                def run(model=model, x=x, dtype=dtype):
                    with torch.inference_mode():
                        if dtype is None:
                            return model.features(x)
                        with torch.autocast(device.type, dtype=dtype):
                            out = model.features(x)
                        return out.float()

                sec = timed(run, device, args.iters)
                out = run().float()
                if ref is None:
                    ref = out
                    dev = "-"
                else:
                    dev = f"{((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item():.2e}"
                print(f"{stream:6} {bs:5d} {prec:>9} {sec:9.4f} {bs / sec:11.1f} {dev:>20}", flush=True)


if __name__ == "__main__":
    main()

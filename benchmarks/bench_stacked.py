"""The ensemble network's kernels against the plain ones, in one run: tanh by NumPy
(model.stacked_tanh) against torch.tanh, and StackedMLP's feature-major forward against a
row-major batched one (x @ W^T per member, ``torch.baddbmm``), on an ensemble's activations.
Prints µs per call (best of 5) and the ratio.

    python benchmarks/bench_stacked.py [--members 64] [--points 512] [--width 16] [--dtype float32]
"""
from __future__ import annotations

import argparse
import time

import torch

from neuroscope.model import MLP, StackedMLP, stacked_tanh


def best_us(fn, repeat: int = 200) -> float:
    best = float("inf")
    for _ in range(5):
        for _ in range(3):
            fn()
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - start) / repeat * 1e6)
    return best


def row_major(model: StackedMLP, x: torch.Tensor) -> torch.Tensor:
    """The reference: activations (E, n, features), one baddbmm per layer."""
    h = x.expand(model.members, *x.shape)
    ps = list(model.stacked)
    for i in range(0, len(ps), 2):
        h = torch.baddbmm(ps[i + 1].unsqueeze(1), h, ps[i].transpose(1, 2))
        if i + 2 < len(ps):
            h = torch.tanh(h)
    return h.squeeze(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--points", type=int, default=512)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    print(f"E={args.members} n={args.points} width={args.width} {args.dtype}, {torch.get_num_threads()} torch threads")
    a = torch.randn(args.members, args.width, args.points, dtype=dtype)
    ref, new = best_us(lambda: torch.tanh(a)), best_us(lambda: stacked_tanh(a))
    print(f"tanh      torch {ref:9.1f} µs   numpy {new:9.1f} µs   {ref / new:5.1f}x")
    model = StackedMLP([MLP(1, width=args.width).to(dtype) for _ in range(args.members)])
    x = torch.linspace(-6, 6, args.points, dtype=dtype).reshape(-1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), row_major(model, x), rtol=1e-4, atol=1e-5)
        ref, new = best_us(lambda: row_major(model, x)), best_us(lambda: model(x))
    print(f"forward   row-major {ref:9.1f} µs   StackedMLP {new:9.1f} µs   {ref / new:5.1f}x")


if __name__ == "__main__":
    main()

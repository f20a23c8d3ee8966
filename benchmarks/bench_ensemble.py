"""The ensemble loop against separate runs, in one process: N runs of the default problem
(lrs spread over [0.02, 0.1]) trained as one ``train_group`` and one after another with
``train``; prints training seconds (summary.json's train_seconds) and µs per model-step.

    python benchmarks/bench_ensemble.py [--n 1 4 16 64] [--steps 300] [overrides ...]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from neuroscope import compose, train
from neuroscope.ensemble import train_group


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--steps", type=int, default=300)
    args, overrides = parser.parse_known_args()
    base = [f"steps={args.steps}", "viz.format=none", "progress=false", *overrides]
    print(f"{'N':>5}{'separate s':>12}{'group s':>10}{'speed-up':>10}{'µs/model-step':>15}   overrides: {overrides or 'none'}")
    for n in args.n:
        cfgs = [compose([*base, f"lr={0.02 + 0.08 * i / max(n - 1, 1):.4f}", f"seed={i}"]) for i in range(n)]
        with tempfile.TemporaryDirectory() as tmp:
            alone = sum(train(c, out_dir=Path(tmp) / f"a{i}").summary["train_seconds"] for i, c in enumerate(cfgs))
            results = train_group(cfgs, [Path(tmp) / f"g{i}" for i in range(n)], render=False, progress=False)
        group = results[0].summary["train_seconds"]
        print(f"{n:>5}{alone:>12.2f}{group:>10.2f}{alone / group:>9.1f}x{1e6 * group / (n * (args.steps + 1)):>15.1f}")


if __name__ == "__main__":
    main()

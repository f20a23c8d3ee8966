"""What sharpness tracking costs: wall time of training with curvature measured every step,
and at the default ``curvature.every``, relative to training with curvature off, in one run.

    python benchmarks/bench_training_cost.py [--steps 1500] [--repeats 3] [overrides ...]
"""
from __future__ import annotations

import argparse
import tempfile
import time

from neuroscope import compose, train


def seconds(overrides: list[str], repeats: int) -> tuple[float, dict]:
    best, summary = float("inf"), {}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            result = train(compose(overrides), out_dir=out)
            best = min(best, time.perf_counter() - t)
            summary = result.summary
    return best, summary


def arguments(doc: str, repeats: int) -> tuple[argparse.Namespace, list[str]]:
    """The command line of a training benchmark: --steps, --repeats, overrides; and the base overrides."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("overrides", nargs="*", help="extra config overrides, e.g. device.threads=1")
    args = parser.parse_args()
    return args, [f"steps={args.steps}", "viz.format=none", "progress=false", *args.overrides]


def main() -> None:
    args, base = arguments(__doc__, repeats=3)
    default_every = compose(base).curvature.every
    off, _ = seconds([*base, "curvature.every=0"], args.repeats)
    print(f"training {args.steps} steps, best of {args.repeats} (no rendering), overrides: {args.overrides or 'none'}")
    print(f"{'curvature':<22}{'seconds':>9}{'vs off':>9}{'HVPs/meas.':>12}{'max sharpness':>15}")
    print(f"{'off (every=0)':<22}{off:>9.2f}{1.0:>8.2f}x{'':>12}{'':>15}")
    for every in (default_every, 1):
        t, s = seconds([*base, f"curvature.every={every}"], args.repeats)
        c = s["curvature"]
        label = f"every={every}" + (" (default)" if every == default_every else "")
        print(f"{label:<22}{t:>9.2f}{t / off:>8.2f}x{c['hvps_total'] / max(c['measurements'], 1):>12.2f}{s['max_sharpness']:>15.3f}")


if __name__ == "__main__":
    main()

"""What the gradient-flow reference costs per GD step: gradients the flow's Runge-Kutta steps
evaluate per GD step, and wall time of a run with ``reference=flow`` against a plain run.

    python benchmarks/bench_flow.py [--steps 1500] [--repeats 2] [overrides ...]
"""
from __future__ import annotations

from bench_training_cost import arguments, seconds  # benchmarks/ is on the path of a script run from it


def main() -> None:
    args, base = arguments(__doc__, repeats=2)
    print(f"{args.steps} GD steps, best of {args.repeats} (no rendering), overrides: {args.overrides or 'none'}")
    print(f"{'curvature.every':<17}{'plain s':>9}{'flow s':>9}{'time ratio':>12}{'flow grads/step':>17}{'RK steps/step':>15}")
    for every in (0, 10):
        plain, _ = seconds([*base, f"curvature.every={every}"], args.repeats)
        flow, summary = seconds([*base, f"curvature.every={every}", "reference=flow"], args.repeats)
        cost = summary["reference"]
        print(f"{every:<17}{plain:>9.2f}{flow:>9.2f}{flow / plain:>11.2f}x{cost['gradients_per_step']:>17.2f}"
              f"{cost['substeps_per_step']:>15.2f}")


if __name__ == "__main__":
    main()

"""Batched sharpness tracking: microseconds per member-measurement for an ensemble of E models
measured by one ``SharpnessTracker(members=E)`` (batched Hessian-vector products, one batched
Lanczos), against E separate single-model trackers on the same points, in one run.

The default problem (1-16-16-1 tanh, sin on 64 points, MSE), an lr sweep over the members, GD
with sharpness every ``--every`` steps; every member measured at the same parameters by both
ways (a separate run is the ensemble of one, as the trainer of issue 12 runs it) (interleaved repeats, best of ``--repeats``). Printed: the times, their ratio, the products
per member-measurement of each way (equal when the members are tracked alike) and the largest
relative difference of the sharpness between the two.

    python benchmarks/bench_lanczos_batched.py [--members 1 16 64] [--measurements 10] [--every 10]
                                               [--repeats 3] [--dtype float32] [--device cpu] [--threads 1]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from neuroscope.curvature import SharpnessTracker  # noqa: E402
from tests.stacked_mlp import forward_stacked, member_params  # noqa: E402

WIDTHS = (1, 16, 16, 1)


class Problem:
    def __init__(self, members: int, dtype: torch.dtype, device: str) -> None:
        self.members = members
        self.x = torch.linspace(-math.pi, math.pi, 64, dtype=dtype, device=device)[:, None]
        self.y = torch.sin(self.x)
        self.lrs = torch.linspace(0.01, 0.1, members, dtype=dtype, device=device) if members > 1 else torch.full((1,), 0.05, dtype=dtype, device=device)
        self.init = [torch.stack(ps).to(device) for ps in zip(*(member_params(s, WIDTHS, dtype) for s in range(members)))]

    def stacked_loss(self, params):
        return ((forward_stacked(params, self.x.expand(len(params[0]), -1, -1)) - self.y) ** 2).mean(dim=(1, 2)).sum()

    def snapshots(self, count: int, every: int) -> list[list[torch.Tensor]]:
        """The stacked parameters every ``every`` GD steps (each member its own lr)."""
        params, out = [p.clone().requires_grad_(True) for p in self.init], []
        for step in range(count * every):
            grads = torch.autograd.grad(self.stacked_loss(params), params)
            if step % every == 0:
                out.append([p.detach().clone() for p in params])
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p -= self.lrs.view(-1, *[1] * (p.dim() - 1)) * g
        return out


def synced(device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter()


def batched(problem: Problem, snaps, device: str) -> tuple[float, list[list[float]], int]:
    tracker = SharpnessTracker(members=problem.members, seed=list(range(problem.members)), hvp="reuse")
    seconds, values, hvps = 0.0, [], 0
    for step, snap in enumerate(snaps):
        params = [p.clone().requires_grad_(True) for p in snap]
        grads = torch.autograd.grad(problem.stacked_loss(params), params, create_graph=True)
        start = synced(device)
        results = tracker.measure_members(problem.stacked_loss, params, grads, step=step)
        seconds += synced(device) - start
        values.append([r.sharpness for r in results])
        hvps += sum(r.hvps for r in results)
    return seconds, values, hvps


def separate(problem: Problem, snaps, device: str) -> tuple[float, list[list[float]], int]:
    trackers = [SharpnessTracker(seed=e, hvp="reuse") for e in range(problem.members)]
    seconds, values, hvps = 0.0, [], 0
    for step, snap in enumerate(snaps):
        row = []
        for e, tracker in enumerate(trackers):
            params = [p[e : e + 1].clone().requires_grad_(True) for p in snap]  # a single run: an ensemble of one
            grads = torch.autograd.grad(problem.stacked_loss(params), params, create_graph=True)
            start = synced(device)
            result = tracker.measure(problem.stacked_loss, params, grads, step=step)
            seconds += synced(device) - start
            row.append(result.sharpness)
            hvps += result.hvps
        values.append(row)
    return seconds, values, hvps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--measurements", type=int, default=10)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-separate", action="store_true", help="time only the batched tracker (large E on a GPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(f"{WIDTHS} tanh, 64 points, {args.measurements} measurements every {args.every} GD steps, {args.dtype}, "
          f"{args.device}, {args.threads} thread(s), best of {args.repeats}")
    warm = Problem(2, dtype, args.device)  # one-time costs (lazy initialisation, first autograd calls) out of the way
    batched(warm, warm.snapshots(2, 1), args.device)
    separate(warm, warm.snapshots(2, 1), args.device)
    print(f"{'E':>6}{'batched us/meas':>17}{'separate us/meas':>18}{'speed-up':>10}{'HVPs/meas b|s':>16}{'max rel diff':>14}")
    for members in args.members:
        problem = Problem(members, dtype, args.device)
        snaps = problem.snapshots(args.measurements, args.every)
        count = members * len(snaps)
        best_b = best_s = math.inf
        for _ in range(args.repeats):
            tb, vb, hb = batched(problem, snaps, args.device)
            best_b = min(best_b, tb)
            if not args.no_separate:
                ts, vs, hs = separate(problem, snaps, args.device)
                best_s = min(best_s, ts)
        if args.no_separate:
            print(f"{members:>6}{1e6 * best_b / count:>17.1f}{'':>18}{'':>10}{hb / count:>16.2f}{'':>14}")
            continue
        diff = max(abs(a - b) / abs(b) for rb, rs in zip(vb, vs) for a, b in zip(rb, rs))
        print(f"{members:>6}{1e6 * best_b / count:>17.1f}{1e6 * best_s / count:>18.1f}{best_s / best_b:>9.2f}x"
              f"{f'{hb / count:.2f}|{hs / count:.2f}':>16}{diff:>14.1e}")


if __name__ == "__main__":
    main()

"""Sharpness estimators side by side: NeuroScope's warm-started tracker, PyHessian's cold power
iteration and scipy's eigsh, on three tanh MLPs at initialization and after a short GD run.

    python benchmarks/bench_sharpness.py            # tiny, medium and large nets (a few minutes)
    python benchmarks/bench_sharpness.py --quick    # tiny and medium, fewer steps

Errors are relative to a converged reference: ARPACK (eigsh) on a float64 copy, tol=1e-10
(tests/test_curvature.py checks the tracker against dense Hessians). Seconds are the median over repeats (random starts 0, 1, ...) of one whole
measurement, including building the gradient graph wherever the method needs it (the
tracker's rows with "grads given" get the graph from the trainer's own GD step, as in
neuroscope.trainer). On a shared machine pass --cpu-time: one thread, process CPU seconds.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch.func import functional_call

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from neuroscope.curvature import (  # noqa: E402
    COLD_MIN_ITER,
    HessianOperator,
    SharpnessTracker,
    lanczos,
    measure_hvp_costs,
)

SIZES = {  # name: (input_dim, width, points); depth 2, tanh
    "tiny": (1, 32, 256),  # 1.2e3 parameters
    "medium": (2, 360, 1024),  # 1.3e5
    "large": (2, 1440, 1024),  # 2.1e6
}


# --------------------------------------------------------------------------- problems


@dataclass
class Problem:
    net: torch.nn.Module
    x: torch.Tensor
    y: torch.Tensor

    @property
    def params(self) -> list[torch.Tensor]:
        return list(self.net.parameters())

    def loss_fn(self):
        names = [name for name, _ in self.net.named_parameters()]
        net, x, y = self.net, self.x, self.y

        def loss_fn(params):
            return ((functional_call(net, dict(zip(names, params)), (x,)) - y) ** 2).mean()

        return loss_fn

    def double(self) -> "Problem":
        return Problem(copy.deepcopy(self.net).double(), self.x.double(), self.y.double())


def sin_fit(input_dim: int, width: int, points: int, seed: int = 0) -> Problem:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(input_dim, width), torch.nn.Tanh(),
        torch.nn.Linear(width, width), torch.nn.Tanh(),
        torch.nn.Linear(width, 1),
    )
    if input_dim == 1:
        x = torch.linspace(-math.pi, math.pi, points)[:, None]
        y = torch.sin(x)
    else:
        side = torch.linspace(-math.pi, math.pi, int(math.isqrt(points)))
        x = torch.cartesian_prod(side, side)
        y = (torch.sin(x[:, 0]) * torch.cos(x[:, 1]))[:, None]
    return Problem(net, x, y)


def gd_step(problem: Problem, lr: float, grads=None) -> None:
    params = problem.params
    if grads is None:
        grads = torch.autograd.grad(problem.loss_fn()(params), params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p -= lr * g.detach()


# --------------------------------------------------------------------------- estimators


def pyhessian_power(loss_fn, params, *, seed: int, tol: float = 1e-3, max_iter: int = 100):
    """PyHessian's eigenvalues(top_n=1), written from its description: gradient graph built
    once, random normal start, Rayleigh quotient, stop on relative change < tol, report the
    quotient before the last."""
    grads = torch.autograd.grad(loss_fn(params), params, create_graph=True)
    generator = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=generator).to(p) for p in params]

    def normalize(vs):
        s = math.sqrt(sum(float((vi * vi).sum()) for vi in vs))
        return [vi / (s + 1e-6) for vi in vs]

    v = normalize(v)
    eigenvalue, hvps = None, 0
    for _ in range(max_iter):
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        hvps += 1
        rayleigh = sum(float((h * vi).sum()) for h, vi in zip(hv, v))
        v = normalize(hv)
        if eigenvalue is not None and abs(eigenvalue - rayleigh) / (abs(eigenvalue) + 1e-6) < tol:
            break
        eigenvalue = rayleigh
    return eigenvalue, hvps


def power_until(loss_fn, params, *, reference: float, target: float, cap: int, seed: int):
    """Power iteration as above, but stopped by an oracle once its Rayleigh quotient is within
    ``target`` relative error of the reference: a lower bound on what power iteration needs
    to be as accurate as that (``cap`` products at most)."""
    grads = torch.autograd.grad(loss_fn(params), params, create_graph=True)
    generator = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=generator).to(p) for p in params]
    rayleigh = float("nan")
    for hvps in range(1, cap + 1):
        s = math.sqrt(sum(float((vi * vi).sum()) for vi in v))
        v = [vi / s for vi in v]
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        rayleigh = sum(float((h * vi).sum()) for h, vi in zip(hv, v))
        if abs(rayleigh - reference) <= target * abs(reference):
            break
        v = hv
    return rayleigh, hvps


def scipy_eigsh(loss_fn, params, *, tol: float = 0.0, seed: int | None = None):
    """ARPACK's largest algebraic eigenvalue over the reused-graph HVP; scipy defaults unless told."""
    op = HessianOperator(loss_fn, params, hvp="reuse")
    dtype = np.float64 if op.dtype == torch.float64 else np.float32

    def matvec(v):
        return op.matvec(torch.from_numpy(np.ascontiguousarray(v, dtype=dtype)).reshape(-1)).numpy()

    v0 = None if seed is None else np.random.default_rng(seed).standard_normal(op.size).astype(dtype)
    operator = LinearOperator((op.size, op.size), matvec=matvec, dtype=dtype)
    values = eigsh(operator, k=1, which="LA", tol=tol, v0=v0)[0]
    return float(values[0]), op.hvps


def reference_sharpness(problem: Problem) -> tuple[float, str]:
    """The converged top eigenvalue: ARPACK on a float64 copy of the problem, tol=1e-10."""
    exact = problem.double()
    start = time.perf_counter()
    value, hvps = scipy_eigsh(exact.loss_fn(), exact.params, tol=1e-10, seed=12345)
    return value, f"eigsh float64 tol=1e-10, {hvps} HVPs, {time.perf_counter() - start:.1f} s"


# --------------------------------------------------------------------------- timing


@dataclass
class Row:
    name: str
    value: float
    error: float  # worst over repeats
    hvps: float  # median
    seconds: float  # median


def repeat(name: str, run, repeats: int, reference: float) -> Row:
    """``run(i) -> (value, hvps, seconds)`` for repeats i = 0, 1, ..."""
    values, hvps, seconds = zip(*(run(i) for i in range(repeats)))
    error = max(abs(v - reference) / abs(reference) for v in values)
    return Row(name, values[0], error, statistics.median(hvps), statistics.median(seconds))


TIMER = time.perf_counter  # main() swaps in time.process_time for --cpu-time


def clock(fn):
    start = TIMER()
    out = fn()
    return out, TIMER() - start


def trainer_grads(loss_fn, params):
    """What the trainer hands the tracker: its GD gradient, computed with create_graph=True."""
    return torch.autograd.grad(loss_fn(params), params, create_graph=True)


def tracker_run(loss_fn, params, *, state: dict | None, tol: float, grads_given: bool, trackers: list):
    def run(i: int):
        tracker = SharpnessTracker(tol=tol, seed=i)
        if state is not None:
            tracker.load_state_dict(state)
        grads = trainer_grads(loss_fn, params) if grads_given else None  # not timed: the trainer pays it
        result, seconds = clock(lambda: tracker.measure(loss_fn, params, grads=grads))
        trackers.append((tracker, result.hvp))
        return result.sharpness, result.hvps, seconds
    return run


def compare(
    problem: Problem, reference: float, repeats: int, state: dict | None, power_cap: int
) -> tuple[list[Row], dict[str, list]]:
    """All estimators at the problem's current parameters; the tracker cold (``state`` None)
    or warm from ``state``. Also returns the trackers used, by how grads were given."""
    loss_fn, params = problem.loss_fn(), problem.params
    rows, trackers = [], {}
    if state is None:
        trackers["grads given"] = []
        rows.append(repeat("tracker: cold, 1st measurement (times HVP variants)",
                           tracker_run(loss_fn, params, state=None, tol=1e-4, grads_given=True,
                                       trackers=trackers["grads given"]), repeats, reference))
    else:
        for tol, given in ((1e-4, True), (1e-4, False), (1e-3, True), (1e-2, True)):
            label = "grads given" if given else "grads=None"
            trackers.setdefault(label, [])
            rows.append(repeat(f"tracker: warm, tol={tol:g}, {label}",
                               tracker_run(loss_fn, params, state=state, tol=tol, grads_given=given,
                                           trackers=trackers[label]), repeats, reference))

    def cold_lanczos(i):
        def solve():
            op = HessianOperator(loss_fn, params, hvp="reuse")
            return lanczos(op, k=1, tol=1e-4, max_iter=30, min_iter=COLD_MIN_ITER,
                           generator=torch.Generator().manual_seed(i))
        result, seconds = clock(solve)
        return result.sharpness, result.hvps, seconds

    def power(i):
        (value, hvps), seconds = clock(lambda: pyhessian_power(loss_fn, params, seed=i))
        return value, hvps, seconds

    def power_as_accurate(i):
        (value, hvps), seconds = clock(lambda: power_until(
            loss_fn, params, reference=reference, target=1e-4, cap=power_cap, seed=i))
        return value, hvps, seconds

    def arpack(i):
        (value, hvps), seconds = clock(lambda: scipy_eigsh(loss_fn, params, seed=i))
        return value, hvps, seconds

    rows.append(repeat(f"lanczos: cold, tol=1e-4, >={COLD_MIN_ITER} steps", cold_lanczos, repeats, reference))
    rows.append(repeat("PyHessian power iteration (tol=1e-3, maxIter=100)", power, repeats, reference))
    rows.append(repeat(f"power iteration until rel.err <= 1e-4 (oracle, cap {power_cap})",
                       power_as_accurate, repeats, reference))
    rows.append(repeat("scipy eigsh, defaults, which='LA'", arpack, repeats, reference))
    return rows, trackers


def print_rows(rows: list[Row]) -> None:
    power = next(r for r in rows if r.name.startswith("PyHessian"))
    print(f"  {'method':<58} {'sharpness':>11} {'rel.err':>8} {'HVPs':>5} {'s/meas':>8}"
          f" {'faster':>7} {'HVPs':>6}")
    print(f"  {'':<58} {'':>11} {'':>8} {'':>5} {'':>8} {'÷power':>7} {'÷power':>6}")
    for r in rows:
        print(f"  {r.name:<58} {r.value:11.5f} {r.error:8.1e} {r.hvps:5.0f} {r.seconds:8.3f}"
              f" {power.seconds / r.seconds:6.1f}x {power.hvps / r.hvps:5.1f}x")


# --------------------------------------------------------------------------- main


def describe_picks(trackers: dict[str, list]) -> str:
    return "; ".join(f"{sorted({hvp for _, hvp in runs})} ({label})" for label, runs in trackers.items())


def bench(name: str, *, steps: int, every: int, repeats: int, power_cap: int, lr_factor: float) -> list[Row]:
    """Print the comparison at initialization and after ``steps`` of GD; return the final rows."""
    input_dim, width, points = SIZES[name]
    problem = sin_fit(input_dim, width, points)
    loss_fn, params = problem.loss_fn(), problem.params
    n = sum(p.numel() for p in params)
    print(f"\n== {name}: {input_dim}-{width}-{width}-1 tanh, {n:,} parameters, {points} points, float32 ==")

    reference, source = reference_sharpness(problem)
    print(f"-- at initialization (reference {reference:.6f}: {source})")
    rows, trackers = compare(problem, reference, repeats, state=None, power_cap=power_cap)
    print_rows(rows)
    print(f"  auto picked: {describe_picks(trackers)}")
    costs = measure_hvp_costs(loss_fn, params, rounds=3)  # all three variants, for the record
    relative = ", ".join(f"{k} {v:.1f}x" for k, v in costs.relative().items())
    print(f"  one HVP, in gradients (best of 3): {relative}; gradient with create_graph=True: "
          f"{costs.graph / costs.gradient:.2f}x; one gradient = {costs.gradient * 1e3:.1f} ms")

    lr = lr_factor / reference
    tracker = SharpnessTracker()
    trajectory = []
    start = time.perf_counter()
    for step in range(steps):
        if step % every == 0:
            grads = trainer_grads(loss_fn, params)
            result = tracker.measure(loss_fn, params, grads=grads)
            trajectory.append((step, result.sharpness, result.hvps))
            gd_step(problem, lr, grads)
        else:
            gd_step(problem, lr)
    train_s = time.perf_counter() - start
    path = ", ".join(f"{s}:{v:.4g}/{h}" for s, v, h in trajectory)
    print(f"-- GD at lr={lr:.4g} (2/lr={2 / lr:.4g}) for {steps} steps, tracked every {every} "
          f"({train_s:.1f} s); step:sharpness/HVPs = {path}")

    reference, source = reference_sharpness(problem)
    print(f"-- after {steps} steps (reference {reference:.6f}: {source}); "
          f"tracker warm from step {steps - every}")
    rows, trackers = compare(problem, reference, repeats, state=tracker.state_dict(), power_cap=power_cap)
    print_rows(rows)
    print(f"  auto picked: {describe_picks(trackers)}")
    return rows


def summarize(final_rows: dict[str, list[Row]]) -> None:
    """The issue's targets: at equal or better accuracy, >= 3x fewer HVPs and >= 3x less time
    per measurement than cold power iteration (PyHessian), on the medium and large nets."""
    print("\ntargets, after training (>= 3x fewer HVPs and >= 3x less time than PyHessian power iteration):")
    for name, rows in final_rows.items():
        power = next(r for r in rows if r.name.startswith("PyHessian"))
        for r in rows:
            if r.name.startswith("tracker") and "grads given" in r.name:
                hvp_ratio, time_ratio = power.hvps / r.hvps, power.seconds / r.seconds
                verdict = "met" if min(hvp_ratio, time_ratio) >= 3 and r.error <= power.error else "MISSED"
                print(f"  {name:<7} {r.name:<40} HVPs {hvp_ratio:5.2f}x  time {time_ratio:5.2f}x  "
                      f"error {r.error:.1e} vs {power.error:.1e}: {verdict}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny and medium nets, fewer steps")
    parser.add_argument("--sizes", nargs="*", choices=list(SIZES), help="override which nets")
    parser.add_argument("--cpu-time", action="store_true",
                        help="one thread, timed by this process's CPU time: robust on a loaded machine")
    args = parser.parse_args(argv)
    global TIMER
    if args.cpu_time:
        torch.set_num_threads(1)
        TIMER = time.process_time
    sizes = args.sizes or (["tiny", "medium"] if args.quick else list(SIZES))
    plan = {  # name: GD steps, track every, repeats, cap on power iteration to equal accuracy
        "tiny": (60, 10, 5, 200) if args.quick else (200, 10, 7, 200),
        "medium": (30, 10, 2, 60) if args.quick else (100, 10, 3, 100),
        "large": (30, 10, 1, 20) if args.quick else (40, 10, 1, 25),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}; timing by {'CPU' if args.cpu_time else 'wall'} time; "
          f"GD lr = 1/sharpness(init), so 2/lr = 2x the initial sharpness")
    total = time.perf_counter()
    final_rows = {}
    for name in sizes:
        steps, every, repeats, power_cap = plan[name]
        final_rows[name] = bench(
            name, steps=steps, every=every, repeats=repeats, power_cap=power_cap, lr_factor=1.0
        )
    summarize(final_rows)
    print(f"\ntotal {time.perf_counter() - total:.0f} s wall; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

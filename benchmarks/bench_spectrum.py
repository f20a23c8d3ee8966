"""The whole-spectrum measurements side by side: what each costs (Hessian-vector products and
seconds) and how accurate it is against the dense result, beside PyHessian's trace and density
on the same net with the same number of probes.

    python benchmarks/bench_spectrum.py            # 1-16-16-1 tanh net (321 parameters)
    python benchmarks/bench_spectrum.py --quick    # fewer probes, one repeat

PyHessian is never a dependency: the comparison runs only if ``import pyhessian`` works (install
it into a benchmark environment with ``pip install --no-deps pyhessian``), and is skipped with a
note otherwise. PyHessian 0.1 calls ``torch.eig``, which torch 2 only keeps to raise an error; its density runs
here with a stand-in that returns ``torch.linalg.eigh`` in the old format, said so in the output.
PyHessian cannot take a PDE loss, so the per-term rows (a Poisson 1D PINN) are NeuroScope's only.
Seconds: the best of ``--repeats`` runs (seeds 0, 1, ...), one thread; float64 throughout.
Trace and density errors are means over those runs, and both packages get the same probes in
each (PyHessian's come from the global generator, seeded alike): their difference is then the
method's, not the probes' luck.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.func import functional_call

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from neuroscope import compose  # noqa: E402
from neuroscope.curvature import (  # noqa: E402
    GaussNewtonOperator, HessianOperator, exact_hessian, hutchinson_trace, lanczos, spectral_density,
)

ROW = "{:<34} {:>7} {:>9} {:>11}  {}"


def runs(repeats: int, fn: Callable[[int], object]) -> tuple[float, list]:
    """``fn(seed)`` for seeds 0, 1, ...: the best seconds and every output."""
    best, outs = float("inf"), []
    for seed in range(repeats):
        torch.manual_seed(seed)  # PyHessian draws its probes from the global generator
        start = time.perf_counter()
        outs.append(fn(seed))
        best = min(best, time.perf_counter() - start)
    return best, outs


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def relative(value: float, reference: float) -> float:
    return abs(value - reference) / abs(reference)


def moment_errors(quadratures: list[tuple[np.ndarray, np.ndarray]], values: np.ndarray) -> str:
    """Relative errors of the quadratures' moments 1-4 against the dense eigenvalues', each the
    mean over the repeats (the probes' variance dominates them)."""
    errors = [np.mean([relative(float((w * x**k).sum(axis=1).mean()), float(np.mean(values**k)))
                       for x, w in quadratures]) for k in range(1, 5)]
    return "moments 1-4 rel. err " + " ".join(f"{e:.1e}" for e in errors)


def trace_note(estimates: list[tuple[float, float]], exact: float) -> tuple[float, str]:
    """Mean relative error and mean |error| / se over the repeats' (estimate, se)."""
    error = float(np.mean([relative(t, exact) for t, _ in estimates]))
    return error, f"|error| / se = {np.mean([abs(t - exact) / se for t, se in estimates]):.2f} (mean)"


# --------------------------------------------------------------------------- the fit problem


def sin_fit(width: int, points: int, gd_steps: int):
    """A tanh MLP fit to sin on [-3, 3] after ``gd_steps`` of GD at lr 0.05: (net, x, y, loss_fn)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(1, width), torch.nn.Tanh(), torch.nn.Linear(width, width), torch.nn.Tanh(),
        torch.nn.Linear(width, 1),
    ).double()
    x = torch.linspace(-3, 3, points, dtype=torch.float64)[:, None]
    y = torch.sin(2 * x)
    names = [n for n, _ in net.named_parameters()]

    def loss_fn(params):
        f = functional_call(net, dict(zip(names, params)), (x,))
        return ((f - y) ** 2).mean()

    for _ in range(gd_steps):
        grads = torch.autograd.grad(loss_fn(list(net.parameters())), list(net.parameters()))
        with torch.no_grad():
            for p, g in zip(net.parameters(), grads):
                p -= 0.05 * g
    return net, x, y, loss_fn


def ours(loss_fn, params, values: np.ndarray, args, rows: list) -> None:
    """Sharpness, lambda_min, trace and density by NeuroScope against the dense eigenvalues."""

    def cold(bottom: bool, seed: int):
        op = HessianOperator(loss_fn, params)
        return lanczos(op, tol=1e-6, max_iter=200, bottom=bottom, generator=seeded(seed))

    seconds, (top, *_) = runs(args.repeats, lambda seed: cold(False, seed))
    rows.append(("sharpness (Lanczos, cold, tol 1e-6)", top.hvps, seconds, relative(top.sharpness, values[-1]), ""))
    seconds, (both, *_) = runs(args.repeats, lambda seed: cold(True, seed))
    low = float(both.bottom.eigenvalues[0])
    rows.append(("sharpness + lambda_min, same run", both.hvps, seconds, relative(both.sharpness, values[-1]),
                 f"lambda_min rel. err {relative(low, values[0]):.1e} (residual {float(both.bottom.residuals[0]):.1e})"))
    seconds, traces = runs(args.repeats, lambda seed: hutchinson_trace(
        HessianOperator(loss_fn, params), probes=args.probes, generator=seeded(seed)))
    error, note = trace_note([(t.trace, t.se) for t in traces], float(values.sum()))
    rows.append((f"trace, Hutchinson, {args.probes} probes", traces[0].hvps, seconds, error, note))
    seconds, slqs = runs(args.repeats, lambda seed: spectral_density(
        HessianOperator(loss_fn, params), probes=args.probes, steps=args.steps, generator=seeded(seed)))
    rows.append((f"density, SLQ {args.probes}x{args.steps}", slqs[0].hvps, seconds,
                 relative(float(slqs[0].nodes.max()), values[-1]),
                 moment_errors([(d.nodes, d.weights) for d in slqs], values)))


# --------------------------------------------------------------------------- PyHessian


def pyhessian_rows(net, x, y, values: np.ndarray, args, rows: list) -> None:
    """PyHessian's trace and density on the same net, same probes; skipped if not installed."""
    try:
        from pyhessian import hessian as PyHessian
    except ImportError:
        print("PyHessian is not importable here: its rows are skipped (pip install --no-deps pyhessian).")
        return
    try:  # PyHessian 0.1's density calls torch.eig, which torch 2 keeps only to raise an error
        torch.eig(torch.eye(2), eigenvectors=True)
    except (AttributeError, RuntimeError):
        torch.eig = _old_eig
        print("PyHessian's density: torch.eig stood in for by torch.linalg.eigh (old return format).")

    def build():
        return PyHessian(net, torch.nn.MSELoss(), data=(x, y), cuda=False)

    seconds, samples = runs(args.repeats, lambda seed: np.asarray(build().trace(maxIter=args.probes, tol=-1.0)))
    estimates = [(float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v)))) for v in samples]
    error, note = trace_note(estimates, float(values.sum()))
    rows.append((f"PyHessian trace, {len(samples[0])} probes", len(samples[0]), seconds, error, note))
    seconds, quadratures = runs(args.repeats, lambda seed: build().density(iter=args.steps, n_v=args.probes))
    quadratures = [(np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)) for x, w in quadratures]
    rows.append((f"PyHessian density, SLQ {args.probes}x{args.steps}", args.probes * args.steps, seconds,
                 relative(float(quadratures[0][0].max()), values[-1]), moment_errors(quadratures, values)))


def _old_eig(matrix: torch.Tensor, eigenvectors: bool = False):
    values, vectors = torch.linalg.eigh(matrix)
    return torch.stack([values, torch.zeros_like(values)], dim=1), vectors


# --------------------------------------------------------------------------- a PINN, per term


def pinn_rows(args, rows: list) -> None:
    """Per-term sharpness and the Gauss-Newton sharpness of a Poisson 1D PINN (frequency 2 pi)."""
    from neuroscope.data import make
    from neuroscope.typed import to_config
    from neuroscope.run import build_model, build_target, seed_everything
    from neuroscope.losses import Objective, build_pde

    config = to_config(compose(["loss=poisson1d", "device=cpu", "device.dtype=float64",
                                "function.params.frequency=6.283185307179586", "loss.n_collocation=64"]))
    pde = build_pde(config.loss, 1)
    problem = make(config, build_target(config.function), pde=pde, device=torch.device("cpu"), dtype=torch.float64)
    seed_everything(0)
    model = build_model(config.model, 1).double()
    objective = Objective(config.loss, problem, pde)
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]

    def net(ps):
        return lambda z: functional_call(model, dict(zip(names, ps)), (z,))

    for name in objective.term_names:
        def term(ps, name=name):
            return objective(net(ps), ps)[1][name]
        top = float(torch.linalg.eigvalsh(exact_hessian(term, params))[-1])
        seconds, (result, *_) = runs(args.repeats, lambda seed: lanczos(
            HessianOperator(term, params), tol=1e-6, max_iter=200, generator=seeded(seed)))
        rows.append((f"PINN sharpness_{name}", result.hvps, seconds, relative(result.sharpness, top), f"= {top:.4g}"))

    def residuals(ps):
        return objective.residuals(net(ps), ps)

    dense = _dense_gauss_newton(residuals, params)
    top = float(torch.linalg.eigvalsh(dense)[-1])
    seconds, (result, *_) = runs(args.repeats, lambda seed: lanczos(
        GaussNewtonOperator(residuals, params), tol=1e-6, max_iter=200, generator=seeded(seed)))
    whole = float(torch.linalg.eigvalsh(exact_hessian(lambda ps: objective(net(ps), ps)[0], params))[-1])
    rows.append(("PINN sharpness_ggn (J v, J^T u)", result.hvps, seconds, relative(result.sharpness, top),
                 f"= {top:.4g}; Hessian's sharpness {whole:.4g}"))


def _dense_gauss_newton(residuals_fn, params) -> torch.Tensor:
    total = 0
    for r, c in residuals_fn(params).values():
        jacobian = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(
            ri, params, retain_graph=True, materialize_grads=True)]) for ri in r.reshape(-1)])
        total = total + 2 * c * jacobian.T @ jacobian
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer probes, one repeat")
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--steps", type=int, default=30, help="Lanczos steps per SLQ probe")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.probes, args.repeats = 20, 1
    torch.set_num_threads(1)
    net, x, y, loss_fn = sin_fit(width=16, points=64, gd_steps=200)
    params = list(net.parameters())
    values = torch.linalg.eigvalsh(exact_hessian(loss_fn, params)).numpy()
    print(f"sin fit, 1-16-16-1 tanh, {len(values)} parameters, after 200 GD steps: dense eigenvalues "
          f"[{values[0]:.4g}, {values[-1]:.4g}], trace {values.sum():.4g}")
    rows: list = []
    ours(loss_fn, params, values, args, rows)
    pyhessian_rows(net, x, y, values, args, rows)
    pinn_rows(args, rows)
    print(ROW.format("measurement", "HVPs", "seconds", "rel. error", "notes"))
    for name, hvps, seconds, error, note in rows:
        print(ROW.format(name, hvps, f"{seconds:.4f}", f"{error:.2e}", note))


if __name__ == "__main__":
    main()

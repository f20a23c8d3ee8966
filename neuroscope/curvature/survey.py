"""``CurvatureSurvey``: what the trainer measures beyond the top eigenpairs of the objective, on its
own schedule: each term's sharpness, the Gauss-Newton sharpness, Hutchinson's trace, and the SLQ
spectral density on a fixed symmetric-log grid; plus the columns of the bottom of the spectrum."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from .base import EigenResult, LossFn
from .ggn import GaussNewtonOperator, Residuals
from .operators import HessianOperator
from .spectrum import hutchinson_trace, spectral_density, symexp, symlog
from .tracker import SharpnessTracker

TermsFn = Callable[[Sequence[Tensor]], dict[str, Tensor]]
"""params -> {term: its weighted value}; the terms sum to the objective."""

BOTTOM_COLUMNS = ("lambda_min", "lambda_min_residual", "sharpness_over_abs_lambda_min")


def bottom_columns(result: EigenResult) -> dict[str, float]:
    """The bottom of the spectrum from a measurement made with ``bottom=True``: the smallest
    algebraic eigenvalue, its Lanczos residual, and sharpness / |lambda_min| (inf when 0)."""
    lam = float(result.bottom.eigenvalues[0])
    ratio = result.sharpness / abs(lam) if lam != 0 else math.inf
    return {"lambda_min": lam, "lambda_min_residual": float(result.bottom.residuals[0]),
            "sharpness_over_abs_lambda_min": ratio}


@dataclass(frozen=True)
class DensityGrid:
    """How densities are measured and where they are put: SLQ with ``probes`` probes of
    ``steps`` Lanczos steps every ``every`` training steps, broadened by a Gaussian of width
    ``sigma`` on s = symlog(lambda, linthresh) (s is about log10 |lambda| / linthresh, signed,
    so sigma is in decades), at ``points`` values of s evenly spaced over
    [-symlog(lambda_max), symlog(lambda_max)]."""

    every: int
    probes: int = 8
    steps: int = 40
    sigma: float = 0.1
    points: int = 361
    linthresh: float = 1e-3
    lambda_max: float = 1e6

    def coordinates(self) -> np.ndarray:
        edge = float(symlog(self.lambda_max, self.linthresh))
        return np.linspace(-edge, edge, self.points)

    def eigenvalues(self) -> np.ndarray:
        return symexp(self.coordinates(), self.linthresh)


class CurvatureSurvey:
    """Every ``every`` steps the top eigenvalue of each of ``terms``' Hessians (columns
    ``sharpness_<term>``, one warm-started tracker per term) and, with ``ggn``, of the
    Gauss-Newton matrix of the whole objective (``sharpness_ggn``); every ``trace_every``
    steps Hutchinson's trace with ``trace_probes`` probes (``trace``, ``trace_se``); every
    ``density.every`` steps one density row (``spectrum()``). 0 turns a schedule off.
    """

    def __init__(
        self, *, every: int = 0, terms: Sequence[str] = (), ggn: bool = False, trace_probes: int = 0,
        trace_every: int = 0, density: DensityGrid | None = None, tol: float = 1e-4, max_iter: int = 30,
        seed: int = 0,
    ) -> None:
        self.every, self.terms, self.ggn = every, list(terms), ggn
        self.trace_probes, self.trace_every, self.density = trace_probes, trace_every if trace_probes else 0, density
        track = dict(method="lanczos", k=1, tol=tol, max_iter=max_iter, hvp="reuse", seed=seed)
        self._trackers = {name: SharpnessTracker(**track) for name in (*self.terms, *(["ggn"] if ggn else []))}
        self.seed = seed
        self._generator = torch.Generator()
        self.density_steps: list[int] = []
        self.density_rows: list[np.ndarray] = []

    def columns(self) -> list[str]:
        extra = ["sharpness_ggn"] if self.ggn else []
        return [f"sharpness_{t}" for t in self.terms] + extra + (["trace", "trace_se"] if self.trace_every else [])

    def due(self, step: int) -> bool:
        """Whether ``measure`` records anything at ``step``."""
        return any(_on(every, step) for every in self._schedules())

    def measure(
        self, step: int, *, loss_fn: LossFn, terms_fn: TermsFn, params: Sequence[Tensor],
        residuals_fn: Residuals | None = None,
    ) -> dict[str, float]:
        """The columns due at ``step`` (density rows are kept here, see ``spectrum``)."""
        params, row = list(params), {}
        if _on(self.every, step):
            for name in self.terms:
                term = self._trackers[name].measure(lambda ps, name=name: terms_fn(ps)[name], params, step=step)
                row[f"sharpness_{name}"] = term.sharpness
            if self.ggn:
                op = GaussNewtonOperator(residuals_fn, params)
                row["sharpness_ggn"] = self._trackers["ggn"].measure_operator(op, step=step).sharpness
        trace_due, density_due = _on(self.trace_every, step), self.density is not None and _on(self.density.every, step)
        # probes drawn from (seed, step) alone: a resumed run that re-records a step draws the same
        self._generator.manual_seed(1_000_003 * self.seed + step)
        if trace_due or density_due:
            with torch.enable_grad():
                hessian = HessianOperator(loss_fn, params, hvp="reuse")
                if trace_due:
                    estimate = hutchinson_trace(hessian, probes=self.trace_probes, generator=self._generator)
                    row.update(trace=estimate.trace, trace_se=estimate.se)
                if density_due:
                    self._add_density(step, hessian)
        return row

    def _add_density(self, step: int, hessian: HessianOperator) -> None:
        d = self.density
        slq = spectral_density(hessian, probes=d.probes, steps=d.steps, generator=self._generator)
        row = slq.on_grid(d.coordinates(), d.sigma, linthresh=d.linthresh)
        if step in self.density_steps:  # a resumed run re-recording its last step
            self.density_rows[self.density_steps.index(step)] = row
        else:
            self.density_steps.append(step)
            self.density_rows.append(row)

    def _schedules(self) -> list[int]:
        terms_or_ggn = self.every if (self.terms or self.ggn) else 0
        return [terms_or_ggn, self.trace_every, self.density.every if self.density is not None else 0]

    def spectrum(self) -> dict[str, np.ndarray] | None:
        """The densities so far as arrays (None without a density schedule): ``step`` (T,),
        ``eigenvalue`` and ``coordinate`` (G,), the grid in lambda and in s, ``density`` (T, G)
        per unit of s, and the scalars ``linthresh``, ``sigma``, ``probes``, ``lanczos_steps``."""
        d = self.density
        if d is None:
            return None
        rows = np.asarray(self.density_rows, dtype=np.float64).reshape(len(self.density_rows), d.points)
        return {
            "step": np.asarray(self.density_steps, dtype=np.int64), "eigenvalue": d.eigenvalues(),
            "coordinate": d.coordinates(), "density": rows, "linthresh": np.float64(d.linthresh),
            "sigma": np.float64(d.sigma), "probes": np.int64(d.probes), "lanczos_steps": np.int64(d.steps),
        }

    def state_dict(self) -> dict:
        """What a resumed run needs: every tracker's state and the densities so far."""
        return {
            "trackers": {name: t.state_dict() for name, t in self._trackers.items()},
            "density_steps": list(self.density_steps),
            "density_rows": [torch.as_tensor(r).clone() for r in self.density_rows],  # tensors: checkpoints load weights_only
        }

    def load_state_dict(self, state: dict) -> None:
        for name, tracker_state in state["trackers"].items():
            self._trackers[name].load_state_dict(tracker_state)
        self.density_steps = list(state["density_steps"])
        self.density_rows = [np.asarray(r) for r in state["density_rows"]]


def _on(every: int, step: int) -> bool:
    return every > 0 and step % every == 0

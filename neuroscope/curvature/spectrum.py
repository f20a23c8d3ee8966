"""The whole spectrum of a symmetric operator, stochastically: Hutchinson's trace with Rademacher
probes, and the spectral density by stochastic Lanczos quadrature (SLQ), broadened onto a grid.

SLQ: for a unit probe v, the m-step Lanczos tridiagonal T gives nodes theta_i (its eigenvalues)
and weights w_i = (first component of its i-th eigenvector)^2 with sum_i w_i p(theta_i) =
v^T p(H) v exactly for polynomials p of degree < 2m. Averaged over probes with E[v v^T] = I/n
this estimates tr p(H) / n: the moments of the eigenvalue distribution, and (with a Gaussian
kernel for p) its density.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .base import Operator, product, rademacher_vector
from .lanczos_runs import krylov


@dataclass
class TraceEstimate:
    """Hutchinson's estimate of tr H: the mean of z^T H z over Rademacher probes z, and its
    standard error (the probes' standard deviation over sqrt(probes); nan for one probe)."""

    trace: float
    se: float
    probes: int
    hvps: int


def hutchinson_trace(op: Operator, *, probes: int, generator: torch.Generator | None = None) -> TraceEstimate:
    """tr H by ``probes`` Rademacher probes, one product each. Unbiased; its variance is
    2 * (sum of the squared off-diagonal entries of H) / probes."""
    if probes < 1:
        raise ValueError(f"probes must be >= 1, got {probes}")
    samples = []
    for _ in range(probes):
        z = rademacher_vector(op.size, op.device, generator)
        samples.append(float(z @ product(op, z)))
    values = np.asarray(samples)
    se = float(values.std(ddof=1) / math.sqrt(probes)) if probes > 1 else math.nan
    return TraceEstimate(trace=float(values.mean()), se=se, probes=probes, hvps=probes)


@dataclass
class SpectralDensity:
    """SLQ quadrature: row p holds probe p's Lanczos nodes and weights (each row of weights sums
    to 1; a probe whose Krylov space closed early is padded with weight 0)."""

    nodes: np.ndarray  # (probes, steps)
    weights: np.ndarray  # (probes, steps)
    hvps: int

    def moment(self, order: int) -> float:
        """The estimate of tr(H^order) / n, the order-th moment of the eigenvalue distribution
        (exact per probe while order < 2 * steps)."""
        return float((self.weights * self.nodes**order).sum(axis=1).mean())

    def on_grid(self, grid: np.ndarray, sigma: float, *, linthresh: float | None = None) -> np.ndarray:
        """The density broadened by a Gaussian of width ``sigma``: on the eigenvalue axis
        (``grid`` holds eigenvalues, the result integrates to 1 over lambda), or with
        ``linthresh`` on the symmetric-log axis s = symlog(lambda, linthresh) (``grid`` holds
        values of s, sigma is in s units, the result integrates to 1 over s). Mass beyond the
        grid's ends is lost, not folded back."""
        centres = self.nodes if linthresh is None else symlog(self.nodes, linthresh)
        grid = np.asarray(grid, dtype=np.float64)[:, None]
        density = np.zeros(grid.shape[0])
        for row, weights in zip(centres, self.weights):  # a probe at a time: bounded memory
            z = (grid - row[None]) / sigma
            density += (np.exp(-0.5 * z * z) * weights[None]).sum(axis=1)
        return density / (len(self.nodes) * sigma * math.sqrt(2 * math.pi))


def spectral_density(
    op: Operator, *, probes: int, steps: int, generator: torch.Generator | None = None,
) -> SpectralDensity:
    """SLQ with ``probes`` normalized Rademacher probes and ``steps`` Lanczos steps each (fully
    reorthogonalized, so the nodes are reliable Ritz values; ``probes * steps`` products)."""
    if probes < 1 or steps < 1:
        raise ValueError(f"probes and steps must be >= 1, got probes={probes}, steps={steps}")
    m = min(steps, op.size)
    nodes, weights = np.zeros((probes, m)), np.zeros((probes, m))
    hvps = 0
    for p in range(probes):
        run = krylov(op, steps=m, v0=rademacher_vector(op.size, op.device, generator), generator=generator)
        size = len(run.theta)
        nodes[p, :size], weights[p, :size] = run.theta, run.s[0] ** 2
        hvps += run.steps
    return SpectralDensity(nodes=nodes, weights=weights, hvps=hvps)


def symlog(x: np.ndarray, linthresh: float) -> np.ndarray:
    """sign(x) log10(1 + |x| / linthresh): linear within ``linthresh`` of 0, decades beyond."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.log10(1.0 + np.abs(x) / linthresh)


def symexp(s: np.ndarray, linthresh: float) -> np.ndarray:
    """The inverse of ``symlog``."""
    s = np.asarray(s, dtype=np.float64)
    return np.sign(s) * linthresh * (10.0 ** np.abs(s) - 1.0)

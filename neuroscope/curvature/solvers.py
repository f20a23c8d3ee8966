"""Eigen-solvers for the top eigenpairs of a symmetric operator (Lanczos, power iteration) or of a
dense matrix (``eigh``), and ``SOLVERS``, the registry the tracker chooses from by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .base import EigenResult, Operator, orthogonalize, random_vector, unit

_BREAKDOWN = 1e-10  # beta below this times |H| means the Krylov space is invariant


def _apply(op: Operator, v: Tensor) -> Tensor:
    """One product in the operator's dtype, returned in float64."""
    return op.matvec(v.to(op.dtype)).to(torch.float64)


def _tridiagonal_eigh(alphas: list[float], betas: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of the small Lanczos tridiagonal, ascending; in NumPy, whose per-call overhead
    on a matrix of a few rows is a fraction of torch's (this runs once per Lanczos step)."""
    t = np.diag(np.asarray(alphas, dtype=np.float64))
    if betas:
        off = np.asarray(betas, dtype=np.float64)
        t += np.diag(off, 1) + np.diag(off, -1)
    return np.linalg.eigh(t)


def lanczos(
    op: Operator, *, k: int = 1, tol: float = 1e-4, max_iter: int = 30, v0: Tensor | None = None,
    min_iter: int = 1, generator: torch.Generator | None = None,
) -> EigenResult:
    """Top-k algebraic eigenpairs by Lanczos with full reorthogonalization (done twice).

    Stops once every one of the top-k Ritz pairs has residual ``|beta_m s_{m,i}|`` (equal to
    the true ``||H y_i - theta_i y_i||`` when the basis is orthogonal) at most
    ``tol * |theta_i|``, after at least ``min_iter`` steps, or after ``max_iter`` steps
    (``converged=False``). One product per step. If the Krylov space becomes invariant
    (e.g. ``v0`` is an eigenvector) it stops there when it has k pairs and ``min_iter`` steps,
    otherwise it continues from a random vector orthogonal to the basis.
    """
    n = op.size
    steps = min(max_iter, n)
    if not 1 <= k <= steps:
        raise ValueError(f"need 1 <= k <= min(max_iter, n); got k={k}, max_iter={max_iter}, n={n}")
    basis = torch.empty(steps + 1, n, dtype=torch.float64, device=op.device)
    start = random_vector(n, op.device, generator) if v0 is None else v0.to(op.device, torch.float64)
    basis[0] = unit(start)
    alphas: list[float] = []
    betas: list[float] = []
    converged = False
    for j in range(steps):
        w = _apply(op, basis[j])
        alphas.append(float(basis[j] @ w))
        w = orthogonalize(w, basis[: j + 1])
        beta = float(torch.linalg.vector_norm(w))
        betas.append(beta)
        theta, s = _tridiagonal_eigh(alphas, betas[:-1])
        top = np.argsort(-theta, kind="stable")[:k]
        residuals = np.abs(beta * s[-1, top])
        m = j + 1
        if m >= max(k, min_iter) and bool((residuals <= tol * np.abs(theta[top])).all()):
            converged = True
            break
        if beta <= _BREAKDOWN * max(float(np.abs(theta).max()), 1e-300):
            if m >= max(k, min_iter) or m == n:
                converged = True  # an invariant subspace: its Ritz pairs are exact
                break
            w = orthogonalize(random_vector(n, op.device, generator), basis[:m])
            beta = float(torch.linalg.vector_norm(w))
            betas[-1] = 0.0  # the new block does not couple to the old one
        basis[m] = w / beta
    ritz = torch.from_numpy(np.ascontiguousarray(s[:, top].T)).to(op.device)
    vectors = torch.stack([unit(y) for y in ritz @ basis[:m]], dim=1)
    return EigenResult(
        eigenvalues=torch.from_numpy(theta[top].copy()), eigenvectors=vectors.to(op.dtype),
        residuals=torch.from_numpy(residuals.copy()),
        hvps=m, iterations=m, converged=converged,
    )


def power_iteration(
    op: Operator, *, k: int = 1, tol: float = 1e-3, max_iter: int = 100, v0: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> EigenResult:
    """PyHessian's estimator: power iteration from a random start, kept as the reference.

    Stops when the Rayleigh quotient changes by less than ``tol`` relative to its previous
    value, or after ``max_iter`` products per pair (``converged=False``); the defaults are
    PyHessian's. For k > 1 each further pair is found the same way, keeping the iterate
    orthogonal to the pairs already found. It converges to the eigenvalue of largest
    MAGNITUDE (which is not the sharpness when a negative eigenvalue dominates) and stalls
    when the top two are close. Returns the last Rayleigh quotient with its vector and their
    true residual (no extra product); PyHessian reports the quotient before the last, which
    differs by less than ``tol``.
    """
    n = op.size
    found: list[Tensor] = []
    values, residuals = [], []
    all_converged, hvps = True, 0
    for i in range(k):
        x = v0 if (v0 is not None and i == 0) else random_vector(n, op.device, generator)
        x = x.to(op.device, torch.float64)
        deflate = torch.stack(found) if found else x.new_empty(0, n)
        previous, converged = None, False
        for _ in range(max_iter):
            v = unit(orthogonalize(x, deflate))
            hv = _apply(op, v)
            hvps += 1
            rayleigh = float(v @ hv)
            if previous is not None and abs(previous - rayleigh) / (abs(previous) + 1e-6) < tol:
                converged = True
                break
            previous, x = rayleigh, hv
        found.append(v)
        values.append(rayleigh)
        residuals.append(float(torch.linalg.vector_norm(hv - rayleigh * v)))
        all_converged &= converged
    order = sorted(range(k), key=lambda i: -values[i])
    return EigenResult(
        eigenvalues=torch.tensor([values[i] for i in order], dtype=torch.float64),
        eigenvectors=torch.stack([found[i] for i in order], dim=1).to(op.dtype),
        residuals=torch.tensor([residuals[i] for i in order], dtype=torch.float64),
        hvps=hvps, iterations=hvps, converged=all_converged,
    )


def dense_eigenpairs(hessian: Tensor, *, k: int = 1) -> EigenResult:
    """Top-k algebraic eigenpairs of a dense symmetric matrix by ``torch.linalg.eigh``."""
    values, vectors = torch.linalg.eigh(hessian.to(torch.float64))
    values, vectors = values.flip(0)[:k], vectors.flip(1)[:, :k]
    residuals = torch.linalg.vector_norm(hessian.to(torch.float64) @ vectors - vectors * values, dim=0)
    return EigenResult(
        eigenvalues=values.cpu(), eigenvectors=vectors.to(hessian.dtype), residuals=residuals.cpu(),
        hvps=hessian.shape[0], iterations=1, converged=True, hvp="exact",
    )


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Solver:
    """A solver the tracker can be configured with, and what it must be given.

    Matrix-free: ``solve(op, k=, tol=, max_iter=, generator=)``, plus ``v0=`` and ``min_iter=``
    when ``warm`` (it can start from the previous measurement). Otherwise
    ``solve(hessian, k=)`` on the dense Hessian.
    """

    solve: Callable[..., EigenResult]
    matrix_free: bool = True
    warm: bool = False


SOLVERS: dict[str, Solver] = {
    "lanczos": Solver(lanczos, warm=True),
    "power": Solver(power_iteration),
    "exact": Solver(dense_eigenpairs, matrix_free=False),
}
"""Solvers by the name ``SharpnessTracker(method=...)`` takes: a new solver is one function
above and one entry here."""

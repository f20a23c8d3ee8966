"""Eigen-solvers for the top eigenpairs of a symmetric operator (Lanczos, from ``lanczos_runs``; power
iteration) or of a dense matrix (``eigh``), and ``SOLVERS``, the registry the tracker chooses from by name."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import Tensor

from .base import EigenResult, Operator, orthogonalize, product, random_vector, unit
from .lanczos_runs import Krylov, batched_krylov, batched_lanczos, krylov, lanczos

__all__ = ["SOLVERS", "Krylov", "Solver", "batched_krylov", "batched_lanczos", "dense_eigenpairs", "krylov", "lanczos",
           "power_iteration"]


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
            hv = product(op, v)
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


def dense_eigenpairs(hessian: Tensor, *, k: int = 1, bottom: bool = False) -> EigenResult:
    """Top-k algebraic eigenpairs of a dense symmetric matrix by ``torch.linalg.eigh`` (and with
    ``bottom=True`` the smallest one as ``result.bottom``)."""
    dense = hessian.to(torch.float64)
    values, vectors = torch.linalg.eigh(dense)

    def pairs(index: Tensor) -> EigenResult:
        vals, vecs = values[index], vectors[:, index]
        residuals = torch.linalg.vector_norm(dense @ vecs - vecs * vals, dim=0)
        return EigenResult(
            eigenvalues=vals.cpu(), eigenvectors=vecs.to(hessian.dtype), residuals=residuals.cpu(),
            hvps=hessian.shape[0], iterations=1, converged=True, hvp="exact",
        )

    result = pairs(torch.arange(len(values) - 1, len(values) - 1 - k, -1))
    if bottom:
        result.bottom = replace(pairs(torch.tensor([0])), hvps=0)
    return result


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Solver:
    """A solver the tracker can be configured with, and what it must be given.

    Matrix-free: ``solve(op, k=, tol=, max_iter=, generator=)``, plus ``v0=`` and ``min_iter=``
    when ``warm`` (it can start from the previous measurement). Otherwise
    ``solve(hessian, k=)`` on the dense Hessian. Either takes ``bottom=True`` when ``bottom``.
    """

    solve: Callable[..., EigenResult]
    matrix_free: bool = True
    warm: bool = False
    bottom: bool = False  # takes ``bottom=True`` and then also returns the smallest pair
    batched: Callable[..., list] | None = None  # the same for every member of a MemberOperator at once


SOLVERS: dict[str, Solver] = {
    "lanczos": Solver(lanczos, warm=True, bottom=True, batched=batched_lanczos),
    "power": Solver(power_iteration),
    "exact": Solver(dense_eigenpairs, matrix_free=False, bottom=True),
}
"""Solvers by the name ``SharpnessTracker(method=...)`` takes: a new solver is one function
above and one entry here."""

"""Eigen-solvers for the top eigenpairs of a symmetric operator (Lanczos, power iteration) or of a
dense matrix (``eigh``), and ``SOLVERS``, the registry the tracker chooses from by name."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .base import EigenResult, Operator, orthogonalize, product, random_vector, unit

_BREAKDOWN = 1e-10  # beta below this times |H| means the Krylov space is invariant


def _tridiagonal_eigh(alphas: list[float], betas: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of the small Lanczos tridiagonal, ascending; in NumPy, whose per-call overhead
    on a matrix of a few rows is a fraction of torch's (this runs once per Lanczos step)."""
    t = np.diag(np.asarray(alphas, dtype=np.float64))
    if betas:
        off = np.asarray(betas, dtype=np.float64)
        t += np.diag(off, 1) + np.diag(off, -1)
    return np.linalg.eigh(t)


@dataclass
class Krylov:
    """What a Lanczos run leaves: its orthonormal basis (m rows, float64), the tridiagonal's Ritz
    values ``theta`` (ascending) and eigenvectors ``s``, the last ``beta`` (so the residual of
    Ritz pair i is ``|beta s[-1, i]|``) and whether the stopping rule was met."""

    basis: Tensor
    theta: np.ndarray
    s: np.ndarray
    beta: float
    converged: bool

    @property
    def steps(self) -> int:
        return self.basis.shape[0]

    def residuals(self, index: np.ndarray) -> np.ndarray:
        return np.abs(self.beta * self.s[-1, index])

    def vectors(self, index: np.ndarray) -> Tensor:
        """Unit Ritz vectors of the pairs ``index``, as columns (n, len(index)), float64."""
        ritz = torch.from_numpy(np.ascontiguousarray(self.s[:, index].T)).to(self.basis.device)
        return torch.stack([unit(y) for y in ritz @ self.basis], dim=1)


StopRule = Callable[[np.ndarray, np.ndarray, float], bool]  # (theta, s, beta) -> converged


def krylov(
    op: Operator, *, steps: int, v0: Tensor | None = None, min_iter: int = 1, stop: StopRule | None = None,
    generator: torch.Generator | None = None,
) -> Krylov:
    """Lanczos with full reorthogonalization (done twice): at most ``steps`` products, fewer once
    ``stop(theta, s, beta)`` holds after ``min_iter`` steps (no ``stop``: exactly ``steps``, the
    tridiagonal is diagonalized once at the end). If the Krylov space becomes invariant it stops
    there after ``min_iter`` steps (its Ritz pairs are then exact), otherwise it continues from a
    random vector orthogonal to the basis, uncoupled from the block before."""
    n = op.size
    steps = min(steps, n)
    basis = torch.empty(steps + 1, n, dtype=torch.float64, device=op.device)
    start = random_vector(n, op.device, generator) if v0 is None else v0.to(op.device, torch.float64)
    basis[0] = unit(start)
    alphas: list[float] = []
    betas: list[float] = []
    converged, m = False, 0
    for j in range(steps):
        w = product(op, basis[j])
        alphas.append(float(basis[j] @ w))
        w = orthogonalize(w, basis[: j + 1])
        beta = float(torch.linalg.vector_norm(w))
        betas.append(beta)
        m = j + 1
        if stop is not None or m == steps:
            theta, s = _tridiagonal_eigh(alphas, betas[:-1])
            if stop is not None and m >= min_iter and stop(theta, s, beta):
                converged = True
                break
        if beta <= _BREAKDOWN * max(max(abs(a) for a in alphas), 1e-300):
            if m >= min_iter or m == n:
                converged = True  # an invariant subspace: its Ritz pairs are exact
                theta, s = _tridiagonal_eigh(alphas, betas[:-1])
                break
            w = orthogonalize(random_vector(n, op.device, generator), basis[:m])
            beta = float(torch.linalg.vector_norm(w))
            betas[-1] = 0.0  # the new block does not couple to the old one
        if m < steps:
            basis[m] = w / beta
    return Krylov(basis=basis[:m], theta=theta, s=s, beta=betas[-1], converged=converged or stop is None)


def lanczos(
    op: Operator, *, k: int = 1, tol: float = 1e-4, max_iter: int = 30, v0: Tensor | None = None,
    min_iter: int = 1, bottom: bool = False, generator: torch.Generator | None = None,
) -> EigenResult:
    """Top-k algebraic eigenpairs by Lanczos (``krylov``).

    Stops once every one of the top-k Ritz pairs has residual ``|beta_m s_{m,i}|`` (equal to
    the true ``||H y_i - theta_i y_i||`` when the basis is orthogonal) at most
    ``tol * |theta_i|``, after at least ``min_iter`` steps, or after ``max_iter`` steps
    (``converged=False``). One product per step. If the Krylov space becomes invariant
    (e.g. ``v0`` is an eigenvector) it stops there when it has k pairs and ``min_iter`` steps,
    otherwise it continues from a random vector orthogonal to the basis.

    ``bottom=True`` also finds the smallest algebraic eigenpair from the same run (``result.bottom``)
    and keeps going until its residual is at most ``tol`` times the largest |Ritz value|: an
    eigenvalue near zero cannot be had to a relative tolerance, and the bottom of a Hessian's
    spectrum is usually crowded, so it takes more steps than the top.
    """
    n = op.size
    if not 1 <= k <= min(max_iter, n):
        raise ValueError(f"need 1 <= k <= min(max_iter, n); got k={k}, max_iter={max_iter}, n={n}")

    def top_of(theta: np.ndarray) -> np.ndarray:
        return np.argsort(-theta, kind="stable")[:k]

    def stop(theta: np.ndarray, s: np.ndarray, beta: float) -> bool:
        top = top_of(theta)
        done = bool((np.abs(beta * s[-1, top]) <= tol * np.abs(theta[top])).all())
        if bottom:
            done &= bool(abs(beta * s[-1, 0]) <= tol * np.abs(theta).max())
        return done

    run = krylov(op, steps=max_iter, v0=v0, min_iter=max(k, min_iter), stop=stop, generator=generator)
    result = _ritz_pairs(run, top_of(run.theta), op.dtype)
    if bottom:
        result.bottom = replace(_ritz_pairs(run, np.array([0]), op.dtype), hvps=0)
    return result


def _ritz_pairs(run: Krylov, index: np.ndarray, dtype: torch.dtype) -> EigenResult:
    return EigenResult(
        eigenvalues=torch.from_numpy(run.theta[index].copy()), eigenvectors=run.vectors(index).to(dtype),
        residuals=torch.from_numpy(run.residuals(index)), hvps=run.steps, iterations=run.steps,
        converged=run.converged,
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


SOLVERS: dict[str, Solver] = {
    "lanczos": Solver(lanczos, warm=True, bottom=True),
    "power": Solver(power_iteration),
    "exact": Solver(dense_eigenpairs, matrix_free=False, bottom=True),
}
"""Solvers by the name ``SharpnessTracker(method=...)`` takes: a new solver is one function
above and one entry here."""

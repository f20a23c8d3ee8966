"""Eigen-solvers for the top eigenpairs of a symmetric operator (Lanczos, power iteration) or of a
dense matrix (``eigh``), and ``SOLVERS``, the registry the tracker chooses from by name."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from .base import EigenResult, MemberOperator, Operator, orthogonalize, product, random_vector, unit
from .members import as_members

_BREAKDOWN = 1e-10  # beta below this times |H| means the Krylov space is invariant


def _tridiagonal_eigh(alphas: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of R small Lanczos tridiagonals (``alphas`` (R, m), ``betas`` (R, m - 1)),
    ascending, in one batched NumPy call: bitwise what one call per matrix gives, and NumPy's
    per-call overhead on a matrix of a few rows is a fraction of torch's (this runs every step)."""
    r, m = alphas.shape
    t = np.zeros((r, m, m))
    i = np.arange(m)
    t[:, i, i] = alphas
    t[:, i[:-1], i[1:]] = betas
    t[:, i[1:], i[:-1]] = betas
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
BatchStop = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(theta (R, m), s (R, m, m), beta (R,)) of the R members still running -> (R,) bools: converged."""


# One row is computed by the single-vector kernels (dot, gemv): bitwise what Lanczos on one
# operator always computed, so a single run's metrics do not move in the last digit.
def _rows_dot(x: Tensor, y: Tensor) -> np.ndarray:
    return np.array([float(x[0] @ y[0])]) if x.shape[0] == 1 else torch.linalg.vecdot(x, y).cpu().numpy()


def _rows_norm(w: Tensor) -> np.ndarray:
    if w.shape[0] == 1:
        return np.array([float(torch.linalg.vector_norm(w[0]))])
    return torch.linalg.vector_norm(w, dim=1).cpu().numpy()


def _rows_orthogonalize(w: Tensor, basis: Tensor) -> Tensor:
    return orthogonalize(w[0], basis[0]).unsqueeze(0) if w.shape[0] == 1 else orthogonalize(w, basis)


def _per_member(value, members: int, name: str) -> list:
    """One value per member: ``value`` for all (None, a number, a generator) or a sequence of ``members``."""
    if value is None or isinstance(value, (int, float, torch.Generator)):
        return [value] * members
    values = list(value)
    if len(values) != members:
        raise ValueError(f"{name}: need one value per member ({members}), got {len(values)}")
    return values


class _Runs:
    """The members' Lanczos runs advancing in lockstep: step j takes one batched product of the
    members still running (the rows of those that stopped are zero and out of every count)."""

    def __init__(self, op: MemberOperator, steps: int, v0: list, generators: list, active: list[bool]) -> None:
        members, n = op.members, op.size
        self.op, self.n, self.steps, self.generators = op, n, steps, generators
        self.basis = torch.zeros(members, steps + 1, n, dtype=torch.float64, device=op.device)
        self.alphas, self.betas = np.zeros((members, steps)), np.zeros((members, steps))
        self.m = [0] * members
        self.theta: list = [None] * members
        self.s: list = [None] * members
        self.converged = [False] * members
        self.running = [e for e in range(members) if active[e]]
        for e in self.running:
            start = random_vector(n, op.device, generators[e]) if v0[e] is None else v0[e].to(op.device, torch.float64)
            self.basis[e, 0] = unit(start)

    def step(self, j: int, stop: BatchStop | None, min_iter: list[int]) -> None:
        """Lanczos step j of every running member; those that stop leave ``running``."""
        run, m = self.running, j + 1
        w = product(self.op, self.basis[:, j])
        if len(run) < self.op.members:  # a frozen member's row (zero, or NaN once diverged) stays out
            keep = torch.zeros(self.op.members, 1, dtype=torch.bool, device=w.device)
            keep[run] = True
            w = torch.where(keep, w, torch.zeros((), dtype=w.dtype, device=w.device))
        alphas = _rows_dot(self.basis[:, j], w)
        w = _rows_orthogonalize(w, self.basis[:, :m])
        betas = _rows_norm(w)
        self.alphas[run, j], self.betas[run, j] = alphas[run], betas[run]
        for e in run:
            self.m[e] = m
        done = {e for e in run if not (np.isfinite(alphas[e]) and np.isfinite(betas[e]))}
        for e in done:  # no Ritz values from a non-finite operator: an honest failure
            self.theta[e], self.s[e] = np.full(m, np.nan), np.full((m, m), np.nan)
        live = [e for e in run if e not in done]
        if live and (stop is not None or m == self.steps):
            self._ritz(live, m)
            if stop is not None:
                met = stop(np.stack([self.theta[e] for e in live]), np.stack([self.s[e] for e in live]), betas[live])
                done |= self._finish([e for e, ok in zip(live, met) if ok and m >= min_iter[e]])
        for e in [e for e in live if e not in done]:
            if betas[e] <= _BREAKDOWN * max(np.abs(self.alphas[e, :m]).max(), 1e-300):
                if m >= min_iter[e] or m == self.n:  # an invariant subspace: its Ritz pairs are exact
                    self._ritz([e], m)
                    done |= self._finish([e])
                else:  # continue from a random vector, uncoupled from the block before
                    w[e] = orthogonalize(random_vector(self.n, self.op.device, self.generators[e]), self.basis[e, :m])
                    betas[e] = float(torch.linalg.vector_norm(w[e]))
                    self.betas[e, j] = 0.0
        self.running = [e for e in run if e not in done]
        if m < self.steps and self.running:
            rows = torch.tensor(self.running, device=w.device)
            scale = torch.tensor(betas[self.running], dtype=torch.float64, device=w.device)
            self.basis[rows, m] = w[rows] / scale[:, None]

    def _ritz(self, members: list[int], m: int) -> None:
        theta, s = _tridiagonal_eigh(self.alphas[members, :m], self.betas[members, : m - 1])
        for i, e in enumerate(members):
            self.theta[e], self.s[e] = theta[i], s[i]

    def _finish(self, members: list[int]) -> set[int]:
        for e in members:
            self.converged[e] = True
        return set(members)

    def result(self, e: int, always_converged: bool) -> Krylov | None:
        m = self.m[e]
        if self.theta[e] is None:  # never started: an inactive member
            return None
        return Krylov(basis=self.basis[e, :m], theta=self.theta[e], s=self.s[e], beta=float(self.betas[e, m - 1]),
                      converged=self.converged[e] or always_converged)


def batched_krylov(
    op: MemberOperator, *, steps: int, v0: Sequence[Tensor | None] | None = None, min_iter: int | Sequence[int] = 1,
    stop: BatchStop | None = None, generators: Sequence[torch.Generator | None] | None = None,
    active: Sequence[bool] | None = None,
) -> list[Krylov | None]:
    """``krylov`` for every member of ``op`` at once: one batched product per step, each member
    with its own start ``v0[e]`` (None: random from ``generators[e]``), basis, tridiagonal,
    stopping (``stop`` judges each running member; ``min_iter[e]``), breakdown and restart
    (from ``generators[e]``). A member stops on its own; its rows are zero from then on and
    its ``steps`` count only the products it used. Inactive members (``active[e]`` false) are
    never started and give None."""
    members = op.members
    v0, generators = _per_member(v0, members, "v0"), _per_member(generators, members, "generators")
    active = [bool(a) for a in _per_member(True if active is None else active, members, "active")]
    min_iter = _per_member(min_iter, members, "min_iter")
    steps = min(steps, op.size)
    runs = _Runs(op, steps, v0, generators, active)
    for j in range(steps):
        if not runs.running:
            break
        runs.step(j, stop, min_iter)
    return [runs.result(e, stop is None) for e in range(members)]


def krylov(
    op: Operator, *, steps: int, v0: Tensor | None = None, min_iter: int = 1, stop: StopRule | None = None,
    generator: torch.Generator | None = None,
) -> Krylov:
    """Lanczos with full reorthogonalization (done twice): at most ``steps`` products, fewer once
    ``stop(theta, s, beta)`` holds after ``min_iter`` steps (no ``stop``: exactly ``steps``, the
    tridiagonal is diagonalized once at the end). If the Krylov space becomes invariant it stops
    there after ``min_iter`` steps (its Ritz pairs are then exact), otherwise it continues from a
    random vector orthogonal to the basis, uncoupled from the block before. The ensemble of one
    of ``batched_krylov``."""
    def rule(theta: np.ndarray, s: np.ndarray, beta: np.ndarray) -> np.ndarray:
        return np.array([stop(t, q, float(b)) for t, q, b in zip(theta, s, beta)], dtype=bool)

    return batched_krylov(as_members(op), steps=steps, v0=[v0], min_iter=[min_iter], stop=None if stop is None else rule,
                          generators=[generator])[0]


def _top(theta: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest algebraic Ritz values (along the last axis), largest first."""
    return np.argsort(-theta, axis=-1, kind="stable")[..., :k]


def _lanczos_stop(k: int, tol: float, bottom: bool) -> BatchStop:
    def stop(theta: np.ndarray, s: np.ndarray, beta: np.ndarray) -> np.ndarray:
        top, last = _top(theta, k), s[:, -1, :]
        residual = np.abs(beta[:, None] * np.take_along_axis(last, top, axis=1))
        done = (residual <= tol * np.abs(np.take_along_axis(theta, top, axis=1))).all(axis=1)
        if bottom:
            done &= np.abs(beta * last[:, 0]) <= tol * np.abs(theta).max(axis=1)
        return done

    return stop


def batched_lanczos(
    op: MemberOperator, *, k: int = 1, tol: float = 1e-4, max_iter: int = 30, v0: Sequence[Tensor | None] | None = None,
    min_iter: int | Sequence[int] = 1, bottom: bool = False, generators: Sequence[torch.Generator | None] | None = None,
    active: Sequence[bool] | None = None,
) -> list[EigenResult | None]:
    """``lanczos`` for every member of ``op`` at once (``batched_krylov``): member e's top-k
    eigenpairs, its own stopping rule, ``hvps`` (only its products) and ``converged``; None for
    an inactive member."""
    n = op.size
    if not 1 <= k <= min(max_iter, n):
        raise ValueError(f"need 1 <= k <= min(max_iter, n); got k={k}, max_iter={max_iter}, n={n}")
    min_iter = [max(k, m) for m in _per_member(min_iter, op.members, "min_iter")]
    runs = batched_krylov(op, steps=max_iter, v0=v0, min_iter=min_iter, stop=_lanczos_stop(k, tol, bottom),
                          generators=generators, active=active)
    results: list[EigenResult | None] = []
    for run in runs:
        result = None if run is None else _ritz_pairs(run, _top(run.theta, k), op.dtype)
        if result is not None and bottom:
            result.bottom = replace(_ritz_pairs(run, np.array([0]), op.dtype), hvps=0)
        results.append(result)
    return results


def lanczos(
    op: Operator, *, k: int = 1, tol: float = 1e-4, max_iter: int = 30, v0: Tensor | None = None,
    min_iter: int = 1, bottom: bool = False, generator: torch.Generator | None = None,
) -> EigenResult:
    """Top-k algebraic eigenpairs by Lanczos (``krylov``); the ensemble of one of ``batched_lanczos``.

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
    return batched_lanczos(as_members(op), k=k, tol=tol, max_iter=max_iter, v0=[v0], min_iter=[min_iter],
                           bottom=bottom, generators=[generator])[0]


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
    batched: Callable[..., list] | None = None  # the same for every member of a MemberOperator at once


SOLVERS: dict[str, Solver] = {
    "lanczos": Solver(lanczos, warm=True, bottom=True, batched=batched_lanczos),
    "power": Solver(power_iteration),
    "exact": Solver(dense_eigenpairs, matrix_free=False, bottom=True),
}
"""Solvers by the name ``SharpnessTracker(method=...)`` takes: a new solver is one function
above and one entry here."""

"""The Lanczos core: ``batched_krylov`` runs Lanczos with full reorthogonalization for every member
of an ensemble operator at once (one batched product per step), each member with its own basis,
tridiagonal, stopping rule, breakdown and restart, and ``batched_lanczos`` takes each member's top
eigenpairs from it; ``krylov`` and ``lanczos`` are their ensembles of one."""

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


def per_member(value, members: int, name: str) -> list:
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

    def __init__(self, op: MemberOperator, steps: int, v0: list, generators: list, active: list[bool],
                 min_iter: list[int]) -> None:
        members, n = op.members, op.size
        self.op, self.n, self.steps, self.generators = op, n, steps, generators
        self.basis = torch.zeros(members, steps + 1, n, dtype=torch.float64, device=op.device)
        self.alphas, self.betas = np.zeros((members, steps)), np.zeros((members, steps))
        self.m, self.min_iter = np.zeros(members, dtype=np.int64), np.asarray(min_iter, dtype=np.int64)
        self.theta: list = [None] * members
        self.s: list = [None] * members
        self.converged = np.zeros(members, dtype=bool)
        self.alpha_max = np.zeros(members)  # the largest |alpha| so far: the scale of a breakdown
        self.in_run = np.array(active, dtype=bool)
        self.running = np.flatnonzero(self.in_run)
        for e in self.running:
            start = random_vector(n, op.device, generators[e]) if v0[e] is None else v0[e].to(op.device, torch.float64)
            self.basis[e, 0] = unit(start)

    def step(self, j: int, stop: BatchStop | None) -> None:
        """Lanczos step j of every running member; those that stop leave ``running``."""
        run, m = self.running, j + 1
        w, alphas, betas = self._product(j)
        # whole columns: a member that is not running never reads its entries from step j on
        self.alphas[:, j], self.betas[:, j], self.m[run] = alphas, betas, m
        np.maximum(self.alpha_max, np.abs(alphas), out=self.alpha_max)
        done: set[int] = set()
        live = run
        if not np.isfinite(alphas.sum() + betas.sum()):  # rows out of the run are zero
            finite = np.isfinite(alphas[run] + betas[run])
            for e in run[~finite]:  # no Ritz values from a non-finite operator: an honest failure
                self.theta[e], self.s[e] = np.full(m, np.nan), np.full((m, m), np.nan)
                done.add(int(e))
            live = run[finite]
        if len(live) and (stop is not None or m == self.steps):
            theta, s = self._ritz(live, m)
            if stop is not None:
                met = stop(theta, s, betas[live])
                if met.any():
                    met = live[met & (self.min_iter[live] <= m)]
                    self.converged[met] = True
                    done.update(met.tolist())
        broken = np.flatnonzero(self.in_run & (betas <= _BREAKDOWN * np.maximum(self.alpha_max, 1e-300)))
        for e in (e for e in broken.tolist() if e not in done):
            if m >= self.min_iter[e] or m == self.n:  # an invariant subspace: its Ritz pairs are exact
                self._ritz(np.array([e]), m)
                self.converged[e] = True
                done.add(e)
            else:  # continue from a random vector, uncoupled from the block before
                w[e] = orthogonalize(random_vector(self.n, self.op.device, self.generators[e]), self.basis[e, :m])
                betas[e] = float(torch.linalg.vector_norm(w[e]))
                self.betas[e, j] = 0.0
        if done:
            self.in_run[list(done)] = False
            self.running = np.flatnonzero(self.in_run)
        if m < self.steps and len(self.running):
            self._extend(m, w, betas)

    def _product(self, j: int) -> tuple[Tensor, np.ndarray, np.ndarray]:
        """Every member's next Lanczos vector before normalization, its alpha and its beta."""
        w = product(self.op, self.basis[:, j])
        members = self.op.members
        if len(self.running) < members:  # a stopped or frozen member's row (zero, or NaN once diverged) stays out
            keep = torch.zeros(members, 1, dtype=torch.bool, device=w.device)
            keep[torch.from_numpy(self.running).to(w.device)] = True
            w = torch.where(keep, w, torch.zeros((), dtype=w.dtype, device=w.device))
        alphas = _rows_dot(self.basis[:, j], w)
        w = _rows_orthogonalize(w, self.basis[:, : j + 1])
        return w, alphas, _rows_norm(w)

    def _extend(self, m: int, w: Tensor, betas: np.ndarray) -> None:
        """Basis row m of the running members: w / beta."""
        if len(self.running) == self.op.members:
            torch.div(w, torch.from_numpy(betas).to(w.device).unsqueeze(1), out=self.basis[:, m])
        else:
            rows = torch.from_numpy(self.running).to(w.device)
            self.basis[rows, m] = w[rows] / torch.from_numpy(betas[self.running]).to(w.device).unsqueeze(1)

    def _ritz(self, members: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        theta, s = _tridiagonal_eigh(self.alphas[members, :m], self.betas[members, : m - 1])
        for i, e in enumerate(members):
            self.theta[e], self.s[e] = theta[i], s[i]
        return theta, s

    def vectors(self, runs: list[Krylov | None], index: list[np.ndarray | None]) -> list[Tensor | None]:
        """``runs[e].vectors(index[e])`` for every member, in one batched product when there are
        several: coefficients zero past each member's own steps, where its basis rows are zero."""
        live = [e for e, run in enumerate(runs) if run is not None]
        if len(live) < 2:
            return [None if run is None else run.vectors(i) for run, i in zip(runs, index)]
        k = max(len(index[e]) for e in live)
        coefficients = np.zeros((len(runs), k, self.basis.shape[1]))
        for e in live:
            coefficients[e, : len(index[e]), : runs[e].steps] = runs[e].s[:, index[e]].T
        vectors = torch.from_numpy(coefficients).to(self.basis.device) @ self.basis
        norms = torch.linalg.vector_norm(vectors, dim=2, keepdim=True)
        vectors = (vectors / torch.where(norms > 0, norms, 1.0)).mT  # unit, the zero vector stays zero
        return [None if run is None else vectors[e, :, : len(index[e])] for e, run in enumerate(runs)]

    def result(self, e: int, always_converged: bool) -> Krylov | None:
        m = int(self.m[e])
        if self.theta[e] is None:  # never started: an inactive member
            return None
        return Krylov(basis=self.basis[e, :m], theta=self.theta[e], s=self.s[e], beta=float(self.betas[e, m - 1]),
                      converged=bool(self.converged[e]) or always_converged)


def _lockstep(
    op: MemberOperator, *, steps: int, v0, min_iter, stop: BatchStop | None, generators, active,
) -> tuple[_Runs, list[Krylov | None]]:
    members = op.members
    v0, generators = per_member(v0, members, "v0"), per_member(generators, members, "generators")
    active = [bool(a) for a in per_member(True if active is None else active, members, "active")]
    steps = min(steps, op.size)
    runs = _Runs(op, steps, v0, generators, active, per_member(min_iter, members, "min_iter"))
    for j in range(steps):
        if not len(runs.running):
            break
        runs.step(j, stop)
    return runs, [runs.result(e, stop is None) for e in range(members)]


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
    return _lockstep(op, steps=steps, v0=v0, min_iter=min_iter, stop=stop, generators=generators, active=active)[1]


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
        rows, top = np.arange(len(theta))[:, None], _top(theta, k)
        last = s[:, -1, :]
        done = (np.abs(beta[:, None] * last[rows, top]) <= tol * np.abs(theta[rows, top])).all(axis=1)
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
    min_iter = [max(k, m) for m in per_member(min_iter, op.members, "min_iter")]
    lockstep, runs = _lockstep(op, steps=max_iter, v0=v0, min_iter=min_iter, stop=_lanczos_stop(k, tol, bottom),
                               generators=generators, active=active)
    results = _ritz_pairs(lockstep, runs, [None if run is None else _top(run.theta, k) for run in runs], op.dtype)
    if bottom:
        lowest = _ritz_pairs(lockstep, runs, [None if run is None else np.array([0]) for run in runs], op.dtype)
        for result, low in zip(results, lowest):
            if result is not None:
                result.bottom = replace(low, hvps=0)
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


def _ritz_pairs(lockstep: _Runs, runs: list[Krylov | None], index: list, dtype: torch.dtype) -> list[EigenResult | None]:
    vectors = lockstep.vectors(runs, index)
    return [None if run is None else EigenResult(
        eigenvalues=torch.from_numpy(run.theta[i].copy()), eigenvectors=v.to(dtype),
        residuals=torch.from_numpy(run.residuals(i)), hvps=run.steps, iterations=run.steps, converged=run.converged,
    ) for run, i, v in zip(runs, index, vectors)]

"""``SharpnessTracker``, what the trainer calls every few steps: top Hessian eigenpairs along a run,
each measurement warm-started from the last and with the cheapest correct Hessian-vector product."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Sequence

import torch
from torch import Tensor

from .base import EigenResult, LossFn, Operator
from .operators import (
    AUTO_CANDIDATES, HVP_VARIANTS, HessianOperator, HvpCosts, exact_hessian, has_graph, measure_hvp_costs,
)
from .solvers import SOLVERS, Solver

COLD_MIN_ITER = 8
"""A cold Lanczos start runs at least this many steps: with fewer, a random start can lock on
the second eigenvalue when the top two are close, and the residual test cannot see it."""


class SharpnessTracker:
    """Top-k Hessian eigenpairs along a training run, each measurement warm-started from the last.

    ``method``: a name in ``SOLVERS``. "lanczos" (warm-started; the first measurement is cold
    from a random vector seeded by ``seed`` and runs at least ``COLD_MIN_ITER`` steps), "power"
    (PyHessian's cold power iteration, the reference, stopped by its own rule, relative change
    of the Rayleigh quotient < ``tol``, within ``max_iter`` products per eigenpair: the
    tracker's ``tol`` and ``max_iter``, as for Lanczos; PyHessian's own 1e-3 and 100 are what
    ``power_iteration`` defaults to, the tracker's own 1e-4 and 30 are tighter and shorter) or
    "exact" (dense Hessian and ``eigh``; small nets only).

    ``hvp``: a variant of ``HVP_VARIANTS``, or "auto": the first measurement times the
    ``AUTO_CANDIDATES`` once (``measure_hvp_costs``; a variant that fails or disagrees, e.g.
    torch.func on a PINN loss, is dropped), and every measurement then takes the one with the
    least expected time for as many products as the previous measurement used
    (``HvpCosts.pick``): "reuse" is charged for building the gradient graph unless the caller
    passed ``grads`` that carry one, and is kept unless another variant is 1.25x cheaper. On
    CPU that is "reuse" at every size we measured (forward-over-reverse costs 2-6 gradients
    per product, a product through the kept graph 1.1-2.4).

    ``bottom=True`` (solvers "lanczos" and "exact"): each measurement also finds the smallest
    algebraic eigenpair, ``result.bottom``, from the same Lanczos run, which then runs until that
    pair converges too (to ``tol`` times the largest |eigenvalue|); the warm start is the sum of
    the previous top and bottom vectors.
    """

    def __init__(
        self, *, method: str = "lanczos", k: int = 1, tol: float = 1e-4, max_iter: int = 30,
        hvp: str = "auto", seed: int = 0, bottom: bool = False,
    ) -> None:
        if method not in SOLVERS:
            raise ValueError(f"method must be one of {sorted(SOLVERS)}, got {method!r}")
        if hvp not in (*HVP_VARIANTS, "auto"):
            raise ValueError(f"hvp must be one of {HVP_VARIANTS + ('auto',)}, got {hvp!r}")
        if bottom and not SOLVERS[method].bottom:
            raise ValueError(f"method {method!r} cannot find the smallest eigenvalue (bottom=True)")
        self.bottom = bottom
        self.method, self.k, self.tol, self.max_iter, self.hvp = method, k, tol, max_iter, hvp
        self.costs: HvpCosts | None = None
        self.measurements = 0
        self._generator = torch.Generator().manual_seed(seed)
        self._eigenvectors: Tensor | None = None
        # The last eigenvectors measured at even and at odd steps: at the edge of stability GD
        # oscillates with period 2, so the Hessian two steps back is the closer one.
        self._by_parity: dict[int, Tensor] = {}
        self._step: int | None = None
        self._expected_hvps = max(k + 2, 4)

    def measure(
        self, loss_fn: LossFn, params: Sequence[Tensor], grads: Sequence[Tensor] | None = None,
        *, step: int | None = None,
    ) -> EigenResult:
        """Top-k eigenpairs of the Hessian of ``loss_fn`` at ``params``.

        ``grads``, if given, must be ``torch.autograd.grad(loss_fn(params), params,
        create_graph=True)`` at these same parameters: products then reuse that graph.
        ``step``, the GD step, lets the warm start come from the latest measurement at a step
        of the same parity (measured here: 5.0 -> 2.3 products per measurement at the edge of
        stability when measuring every step); without it, from the previous measurement.
        """
        params = list(params)
        self._step = step
        solver = SOLVERS[self.method]
        with torch.enable_grad():
            if solver.matrix_free:
                spent, variant = self._choose_hvp(loss_fn, params, grads)
                op = HessianOperator(loss_fn, params, hvp=variant, grads=grads)
                result = self._solve(solver, op)
                self._expected_hvps = result.hvps
                result = replace(result, hvps=result.hvps + spent, hvp=variant)
            else:
                result = solver.solve(exact_hessian(loss_fn, params), k=self.k, **self._bottom_option())
        self._remember(result, step)
        return result

    def measure_operator(self, op: Operator, *, step: int | None = None) -> EigenResult:
        """Top-k eigenpairs of any matrix-free operator (a Gauss-Newton matrix, one term's
        Hessian), warm-started like ``measure``; the tracker's ``hvp`` choice does not apply."""
        solver = SOLVERS[self.method]
        if not solver.matrix_free:
            raise ValueError(f"method {self.method!r} needs the dense Hessian, not an operator")
        self._step = step
        with torch.enable_grad():
            result = self._solve(solver, op)
        self._remember(result, step)
        return result

    def _remember(self, result: EigenResult, step: int | None) -> None:
        self._eigenvectors = result.eigenvectors.detach().clone()
        if result.bottom is not None:
            self._eigenvectors = torch.cat([self._eigenvectors, result.bottom.eigenvectors.detach()], dim=1)
        if step is not None:
            self._by_parity[step % 2] = self._eigenvectors
        self.measurements += 1

    def _choose_hvp(self, loss_fn: LossFn, params: list[Tensor], grads) -> tuple[int, str]:
        if self.hvp != "auto":
            return 0, self.hvp
        spent = 0
        if self.costs is None:
            self.costs = measure_hvp_costs(
                loss_fn, params, grads=grads, variants=AUTO_CANDIDATES, generator=self._generator
            )
            spent = self.costs.hvps
        return spent, self.costs.pick(graph_given=has_graph(grads), expected_hvps=self._expected_hvps)

    def _solve(self, solver: Solver, op: Operator) -> EigenResult:
        options = {"k": self.k, "tol": self.tol, "max_iter": self.max_iter, "generator": self._generator,
                   **self._bottom_option()}
        if solver.warm:
            v0 = self._warm_start(op)
            options["v0"] = v0
            options["min_iter"] = 1 if v0 is not None else min(COLD_MIN_ITER, self.max_iter, op.size)
        return solver.solve(op, **options)

    def _warm_start(self, op: Operator) -> Tensor | None:
        """The previous top eigenvector (at a step of the same parity, when steps are given);
        for k > 1 (or with the bottom pair) the sum of the previous vectors, so that the first
        Krylov vectors nearly span them."""
        previous = self._eigenvectors
        if self._step is not None and self._step % 2 in self._by_parity:
            previous = self._by_parity[self._step % 2]
        if previous is None or previous.shape != (op.size, self.k + self.bottom):
            return None
        return previous.to(op.device, torch.float64).sum(dim=1)

    def _bottom_option(self) -> dict[str, bool]:
        return {"bottom": True} if self.bottom else {}

    def state_dict(self) -> dict:
        """What a resumed run needs to continue warm: previous eigenvectors, RNG, HVP timings."""
        return {
            "eigenvectors": None if self._eigenvectors is None else self._eigenvectors.cpu().clone(),
            "by_parity": {parity: v.cpu().clone() for parity, v in self._by_parity.items()},
            "costs": None if self.costs is None else asdict(self.costs),
            "expected_hvps": self._expected_hvps,
            "measurements": self.measurements,
            "generator": self._generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict()``: the next measurement is warm."""
        self._eigenvectors = state["eigenvectors"]
        self._by_parity = dict(state.get("by_parity", {}))
        self.costs = None if state["costs"] is None else HvpCosts(**state["costs"])
        self._expected_hvps = state["expected_hvps"]
        self.measurements = state["measurements"]
        self._generator.set_state(state["generator"])


# ---------------------------------------------------------------------------------------------
# STAND-IN (issue 12, branch i12-core): the ensemble API of the batched tracker, written as a
# loop over per-member trackers on member views, so the ensemble trainer runs before the
# batched Lanczos lands. The integrator replaces this block with the real batched tracker;
# nothing outside it relies on more than this API:
#   SharpnessTracker(..., seed=int | Sequence[int], members=E)
#   measure_members(loss_fn, params, grads=None, *, step=None, active=None) -> list[EigenResult | None]
#   member_state_dict(e), load_member_state_dict(e, state)
# ---------------------------------------------------------------------------------------------
_OneRunTracker = SharpnessTracker


class SharpnessTracker(_OneRunTracker):  # noqa: F811 (the stand-in extends the one-run tracker)
    """The one-run tracker plus the ensemble API; members > 1 loop over one tracker per member."""

    def __init__(self, *, seed: int | Sequence[int] = 0, members: int = 1, **options) -> None:
        seeds = [int(s) for s in seed] if isinstance(seed, (list, tuple)) else [int(seed)] * members
        super().__init__(seed=seeds[0], **options)
        self.members = members
        self._each = [self] + [_OneRunTracker(seed=s, **options) for s in seeds[1:]]

    def measure_members(self, loss_fn: LossFn, params: Sequence[Tensor], grads: Sequence[Tensor] | None = None,
                        *, step: int | None = None, active: Sequence[bool] | None = None) -> list[EigenResult | None]:
        if self.members == 1:
            return [self.measure(loss_fn, params, grads, step=step) if active is None or active[0] else None]
        out: list[EigenResult | None] = []
        for e, tracker in enumerate(self._each):
            if active is not None and not active[e]:
                out.append(None)
                continue
            views = [p[e].detach().clone().requires_grad_(True) for p in params]

            def member_loss(ps, e=e):
                return loss_fn([torch.cat([p[:e].detach(), q.unsqueeze(0), p[e + 1:].detach()]) for p, q in zip(params, ps)])

            with torch.enable_grad():
                member_grads = torch.autograd.grad(member_loss(views), views, create_graph=True, materialize_grads=True)
            out.append(tracker.measure(member_loss, views, member_grads, step=step))
        return out

    def member_state_dict(self, e: int) -> dict:
        return _OneRunTracker.state_dict(self._each[e])

    def load_member_state_dict(self, e: int, state: dict) -> None:
        _OneRunTracker.load_state_dict(self._each[e], state)

"""``SharpnessTracker``, what the trainer calls every few steps: top Hessian eigenpairs along a run,
each measurement warm-started from the last and with the cheapest correct Hessian-vector product;
for an ensemble, every member's, from batched products, each member tracked as its own run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from numbers import Integral
from typing import Sequence

import torch
from torch import Tensor

from .base import EigenResult, LossFn, MemberOperator, Operator, random_vector
from .members import MemberBlock, MemberLayout, MemberRows, as_members, member_hessians
from .operators import AUTO_CANDIDATES, HVP_VARIANTS, HessianOperator, HvpCosts, has_graph, measure_hvp_costs
from .solvers import SOLVERS, Solver

ENSEMBLE_CANDIDATES = ("reuse",)
"""What hvp="auto" times for an ensemble of more than one member (``AUTO_CANDIDATES`` for one)."""

COLD_MIN_ITER = 8
"""A cold Lanczos start runs at least this many steps: with fewer, a random start can lock on
the second eigenvalue when the top two are close, and the residual test cannot see it."""


@dataclass
class _Member:
    """What the tracker keeps for one member: all that a single run's tracker keeps, but the
    HVP timings (shared by the ensemble, see ``timed``)."""

    generator: torch.Generator
    expected_hvps: int
    eigenvectors: Tensor | None = None
    # The last eigenvectors measured at even and at odd steps: at the edge of stability GD
    # oscillates with period 2, so the Hessian two steps back is the closer one.
    by_parity: dict[int, Tensor] = field(default_factory=dict)
    measurements: int = 0
    timed: bool = False  # its separate run would have timed the HVP variants already


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

    ``members`` > 1: an ensemble of independent models with stacked parameters, measured by
    ``measure_members``. Member e is tracked exactly as a separate run's tracker with seed
    ``seed[e]`` would track it (warm starts, parities, random starts, product counts); the
    Hessian-vector products are batched (one product serves every member still iterating) and
    the "auto" choice is timed once for the ensemble. ``measure`` is the ensemble of one.
    """

    def __init__(
        self, *, method: str = "lanczos", k: int = 1, tol: float = 1e-4, max_iter: int = 30,
        hvp: str = "auto", seed: int | Sequence[int] = 0, bottom: bool = False, members: int = 1,
    ) -> None:
        if method not in SOLVERS:
            raise ValueError(f"method must be one of {sorted(SOLVERS)}, got {method!r}")
        if hvp not in (*HVP_VARIANTS, "auto"):
            raise ValueError(f"hvp must be one of {HVP_VARIANTS + ('auto',)}, got {hvp!r}")
        if bottom and not SOLVERS[method].bottom:
            raise ValueError(f"method {method!r} cannot find the smallest eigenvalue (bottom=True)")
        seeds = [int(seed)] * members if isinstance(seed, Integral) else [int(s) for s in seed]
        if members < 1 or len(seeds) != members:
            raise ValueError(f"need members >= 1 and one seed per member; got members={members}, {len(seeds)} seeds")
        self.bottom, self.members = bottom, members
        self.method, self.k, self.tol, self.max_iter, self.hvp = method, k, tol, max_iter, hvp
        self.costs: HvpCosts | None = None
        self._members = [_Member(torch.Generator().manual_seed(s), expected_hvps=max(k + 2, 4)) for s in seeds]
        self._step: int | None = None

    @property
    def measurements(self) -> int:
        """Measurements made (of the member measured most often)."""
        return max(m.measurements for m in self._members)

    @property
    def _eigenvectors(self) -> Tensor | None:
        return self._members[0].eigenvectors

    def measure(
        self, loss_fn: LossFn, params: Sequence[Tensor], grads: Sequence[Tensor] | None = None,
        *, step: int | None = None,
    ) -> EigenResult:
        """Top-k eigenpairs of the Hessian of ``loss_fn`` at ``params`` (a tracker of one member).

        ``grads``, if given, must be ``torch.autograd.grad(loss_fn(params), params,
        create_graph=True)`` at these same parameters: products then reuse that graph.
        ``step``, the GD step, lets the warm start come from the latest measurement at a step
        of the same parity (measured here: 5.0 -> 2.3 products per measurement at the edge of
        stability when measuring every step); without it, from the previous measurement.
        """
        self._single("measure")
        params = list(params)
        return self._measure(loss_fn, params, grads, MemberLayout.whole(sum(p.numel() for p in params)), step, [True])[0]

    def measure_members(
        self, loss_fn: LossFn, params: Sequence[Tensor], grads: Sequence[Tensor] | None = None,
        *, step: int | None = None, active: Sequence[bool] | None = None,
    ) -> list[EigenResult | None]:
        """Every member's top-k eigenpairs: ``params`` are stacked (leading dimension
        ``members``), ``loss_fn(params)`` is the sum of the members' losses (so its Hessian is
        block-diagonal), ``grads`` as for ``measure``. Result e holds member e's eigenvectors
        (P, k), flat over ``torch.cat([p[e].reshape(-1) for p in params])``, its residuals,
        its own ``hvps`` and ``converged``. An inactive member (``active[e]`` false) gets None,
        spends no counted product and keeps its state."""
        params = list(params)
        layout = MemberLayout.stacked(params, self.members)
        active = [True] * self.members if active is None else [bool(a) for a in active]
        if len(active) != self.members:
            raise ValueError(f"active needs one flag per member ({self.members}), got {len(active)}")
        return self._measure(loss_fn, params, grads, layout, step, active)

    def _measure(self, loss_fn: LossFn, params: list[Tensor], grads, layout: MemberLayout, step: int | None,
                 active: list[bool]) -> list[EigenResult | None]:
        self._step = step
        if not any(active):
            return [None] * self.members
        solver = SOLVERS[self.method]
        with torch.enable_grad():
            if solver.matrix_free:
                spent, variant = self._choose_hvp(loss_fn, params, grads, layout, active)
                op = MemberRows(HessianOperator(loss_fn, params, hvp=variant, grads=grads), layout)
                results = self._solve(solver, op, active)
                for member, result in zip(self._members, results):
                    if result is not None:
                        member.expected_hvps = result.hvps
                results = [None if r is None else replace(r, hvps=r.hvps + extra, hvp=variant) for r, extra in zip(results, spent)]
            else:
                blocks = member_hessians(loss_fn, params, layout.members, active)
                results = [None if h is None else solver.solve(h, k=self.k, **self._bottom_option()) for h in blocks]
        for member, result in zip(self._members, results):
            if result is not None:
                self._remember(member, result, step)
        return results

    def measure_operator(self, op: Operator, *, step: int | None = None) -> EigenResult:
        """Top-k eigenpairs of any matrix-free operator (a Gauss-Newton matrix, one term's
        Hessian), warm-started like ``measure``; the tracker's ``hvp`` choice does not apply."""
        self._single("measure_operator")
        solver = SOLVERS[self.method]
        if not solver.matrix_free:
            raise ValueError(f"method {self.method!r} needs the dense Hessian, not an operator")
        self._step = step
        with torch.enable_grad():
            result = self._solve(solver, as_members(op), [True])[0]
        self._remember(self._members[0], result, step)
        return result

    def _single(self, what: str) -> None:
        if self.members != 1:
            raise ValueError(f"{what} is for a tracker of one model; this one has {self.members} members "
                             "(measure_members, member_state_dict)")

    def _remember(self, member: _Member, result: EigenResult, step: int | None) -> None:
        member.eigenvectors = result.eigenvectors.detach().clone()
        if result.bottom is not None:
            member.eigenvectors = torch.cat([member.eigenvectors, result.bottom.eigenvectors.detach()], dim=1)
        if step is not None:
            member.by_parity[step % 2] = member.eigenvectors
        member.measurements += 1

    def _choose_hvp(self, loss_fn: LossFn, params: list[Tensor], grads, layout: MemberLayout,
                    active: list[bool]) -> tuple[list[int], str]:
        """The variant for this measurement, and per member the products timing spent on it:
        a member's first measurement pays what its separate run's timing would have (and draws
        the same probe from its generator), though the ensemble times only once."""
        if self.hvp != "auto":
            return [0] * self.members, self.hvp
        device = params[0].device
        due = [a and not m.timed for m, a in zip(self._members, active)]
        probes = [random_vector(layout.size, device, m.generator) if d else None for m, d in zip(self._members, due)]
        if self.costs is None:
            rows = torch.stack([torch.zeros(layout.size, dtype=torch.float64, device=device) if p is None else p for p in probes])
            # an ensemble times the kept graph only: torch.func's forward-over-reverse through the
            # stacked net took 0.65 s a product at E=64 (2.9 s of timing) and is never the cheaper on CPU
            variants = AUTO_CANDIDATES if self.members == 1 else ENSEMBLE_CANDIDATES
            self.costs = measure_hvp_costs(loss_fn, params, grads=grads, variants=variants, probe=layout.flat(rows))
        for member, d in zip(self._members, due):
            member.timed |= d
        expected = max(m.expected_hvps for m, a in zip(self._members, active) if a)
        spent = [self.costs.hvps if d else 0 for d in due]
        return spent, self.costs.pick(graph_given=has_graph(grads), expected_hvps=expected)

    def _solve(self, solver: Solver, op: MemberOperator, active: list[bool]) -> list[EigenResult | None]:
        options = {"k": self.k, "tol": self.tol, "max_iter": self.max_iter, **self._bottom_option()}
        warm: dict[str, list] = {}
        if solver.warm:
            v0 = [self._warm_start(m, op) if a else None for m, a in zip(self._members, active)]
            warm = {"v0": v0, "min_iter": [1 if v is not None else min(COLD_MIN_ITER, self.max_iter, op.size) for v in v0]}
        generators = [m.generator for m in self._members]
        if solver.batched is not None:
            return solver.batched(op, generators=generators, active=active, **warm, **options)
        # no batched form: one member at a time, through products with the other rows zero
        return [solver.solve(MemberBlock(op, e), generator=generators[e], **{key: v[e] for key, v in warm.items()}, **options)
                if a else None for e, a in enumerate(active)]

    def _warm_start(self, member: _Member, op: MemberOperator) -> Tensor | None:
        """The member's previous top eigenvector (at a step of the same parity, when steps are
        given); for k > 1 (or with the bottom pair) the sum of the previous vectors, so that the
        first Krylov vectors nearly span them."""
        previous = member.eigenvectors
        if self._step is not None and self._step % 2 in member.by_parity:
            previous = member.by_parity[self._step % 2]
        if previous is None or previous.shape != (op.size, self.k + self.bottom):
            return None
        return previous.to(op.device, torch.float64).sum(dim=1)

    def _bottom_option(self) -> dict[str, bool]:
        return {"bottom": True} if self.bottom else {}

    def state_dict(self) -> dict:
        """What a resumed run needs to continue warm: previous eigenvectors, RNG, HVP timings."""
        self._single("state_dict")
        return self.member_state_dict(0)

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict()``: the next measurement is warm."""
        self._single("load_state_dict")
        self.load_member_state_dict(0, state)

    def member_state_dict(self, e: int) -> dict:
        """Member e's state, in ``state_dict``'s format: what its run resumed alone (or as member
        of another ensemble) needs to continue as if never stopped."""
        m = self._members[e]
        return {
            "eigenvectors": None if m.eigenvectors is None else m.eigenvectors.cpu().clone(),
            "by_parity": {parity: v.cpu().clone() for parity, v in m.by_parity.items()},
            "costs": asdict(self.costs) if m.timed and self.costs is not None else None,
            "expected_hvps": m.expected_hvps,
            "measurements": m.measurements,
            "generator": m.generator.get_state(),
        }

    def load_member_state_dict(self, e: int, state: dict) -> None:
        """Continue member e from a ``state_dict()`` or ``member_state_dict()``. The ensemble
        keeps one set of HVP timings: the first loaded (a member loaded without any is charged
        its timing at its next measurement, as its separate run would be)."""
        m = self._members[e]
        m.eigenvectors = state["eigenvectors"]
        m.by_parity = dict(state.get("by_parity", {}))
        m.timed = state["costs"] is not None
        if m.timed and self.costs is None:
            self.costs = HvpCosts(**state["costs"])
        if not any(member.timed for member in self._members):
            self.costs = None
        m.expected_hvps = state["expected_hvps"]
        m.measurements = state["measurements"]
        m.generator.set_state(state["generator"])

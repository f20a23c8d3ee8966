"""Curvature of an ensemble (issue 12): E tiny MLPs with stacked weights trained as one, the summed
loss's block-diagonal Hessian measured by batched Lanczos. Oracles: each member run through the
single-model tracker on its own unstacked parameters and loss, and its dense Hessian
(``torch.func.hessian``, then ``eigh``)."""

from __future__ import annotations

import io
from dataclasses import dataclass, replace

import pytest
import torch

from neuroscope.curvature import COLD_MIN_ITER, MatrixOperator, SharpnessTracker, batched_lanczos, lanczos

from .stacked_mlp import forward_stacked, member_params, stack

# torch's forward-mode AD (hvp="auto" times torch.func) loads its decompositions through torch.jit.script once
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("one_thread"),
]

WIDTHS = (1, 6, 6, 1)  # 61 parameters per member


# --------------------------------------------------------------------------- the ensemble and its oracles


def forward_single(params, x):
    h = x
    for i in range(0, len(params), 2):
        h = h @ params[i].T + params[i + 1]
        h = torch.tanh(h) if i + 2 < len(params) else h
    return h


@dataclass
class Ensemble:
    """Members with their own seeds, data and loss weights; ``fit_self`` members get their own
    initial outputs as targets (zero residual: a Hessian of rank <= points)."""

    seeds: tuple[int, ...]
    points: int = 12
    weights: tuple[float, ...] | None = None
    fit_self: tuple[int, ...] = ()

    def __post_init__(self):
        e = torch.arange(len(self.seeds), dtype=torch.float64)[:, None, None]
        self.x = torch.linspace(-3, 3, self.points, dtype=torch.float64)[None, :, None] + 0.1 * e
        self.y = torch.sin((1 + 0.3 * e) * self.x)
        for m in self.fit_self:
            self.y[m] = forward_single(member_params(self.seeds[m], WIDTHS), self.x[m]).detach()
        self.c = torch.tensor(self.weights or [1.0] * len(self.seeds), dtype=torch.float64)

    @property
    def size(self) -> int:
        return len(self.seeds)

    def loss(self, params):
        return (self.c * ((forward_stacked(params, self.x) - self.y) ** 2).mean(dim=(1, 2))).sum()

    def member_loss(self, e: int):
        return lambda ps: self.c[e] * ((forward_single(ps, self.x[e]) - self.y[e]) ** 2).mean()

    def stacked(self) -> list[torch.Tensor]:
        return stack([member_params(s, WIDTHS) for s in self.seeds])

    def separate(self) -> list[list[torch.Tensor]]:
        return [[p.requires_grad_(True) for p in member_params(s, WIDTHS)] for s in self.seeds]


def dense_spectrum(loss_fn, params) -> torch.Tensor:
    """Eigenvalues of the dense Hessian, largest first (torch.func.hessian: independent of the tracker)."""
    sizes, shapes = [p.numel() for p in params], [p.shape for p in params]
    flat = torch.cat([p.detach().reshape(-1) for p in params])

    def flat_loss(v):
        return loss_fn([c.view(s) for c, s in zip(torch.split(v, sizes), shapes)])

    return torch.linalg.eigvalsh(torch.func.hessian(flat_loss)(flat)).flip(0)


def assert_same_measurement(ours, theirs, *, rtol=1e-10):
    """A member's result against its separate run's: the same products, steps and verdict, the
    same eigenpairs to rounding (the stacked net's sums run in another order)."""
    assert (ours.hvps, ours.iterations, ours.converged) == (theirs.hvps, theirs.iterations, theirs.converged)
    torch.testing.assert_close(ours.eigenvalues, theirs.eigenvalues, rtol=rtol, atol=1e-12)
    torch.testing.assert_close(ours.residuals, theirs.residuals, rtol=1e-4, atol=1e-10)
    cosines = (ours.eigenvectors * theirs.eigenvectors).sum(dim=0).abs()
    assert torch.all(cosines > 1 - 1e-8), cosines
    if theirs.bottom is not None:
        assert_same_measurement(ours.bottom, theirs.bottom, rtol=rtol)


def gd_step(params, grads, lrs):
    """One GD step; ``lrs`` a number, or (E,) per member of stacked ``params``."""
    with torch.no_grad():
        for p, g in zip(params, grads):
            p -= (lrs.view(-1, *[1] * (p.dim() - 1)) if torch.is_tensor(lrs) and lrs.dim() else lrs) * g


def track(ens: Ensemble, options: dict, *, steps: int, lr: float = 0.05, active=lambda step: None, check=None):
    """Train the stacked ensemble and every member separately with GD (each its own lr), measure
    every step with the ensemble tracker and with one single tracker per member, compare each
    pair (``check(step, ours, theirs)`` sees them too). Returns the two kinds of tracker."""
    tracker = SharpnessTracker(members=ens.size, seed=list(ens.seeds), **options)
    singles = [SharpnessTracker(seed=s, **options) for s in ens.seeds]
    stacked, separate = ens.stacked(), ens.separate()
    lrs = lr * (1 + 0.5 * torch.arange(ens.size, dtype=torch.float64))
    for step in range(steps):
        grads = torch.autograd.grad(ens.loss(stacked), stacked, create_graph=True)
        flags = active(step)
        ours = tracker.measure_members(ens.loss, stacked, grads, step=step, active=flags)
        theirs = []
        for e, params in enumerate(separate):
            g = torch.autograd.grad(ens.member_loss(e)(params), params, create_graph=True)
            if flags is not None and not flags[e]:  # not measured at this step, trained all the same
                assert ours[e] is None
                theirs.append(None)
            else:
                theirs.append(singles[e].measure(ens.member_loss(e), params, g, step=step))
                mine = ours[e]
                if step == 0 and options.get("hvp") == "auto" and ens.size > 1:
                    # an ensemble times the kept graph only (ENSEMBLE_CANDIDATES): fewer timing
                    # products, the same Lanczos products
                    spent, alone = tracker.costs.hvps, singles[e].costs.hvps
                    assert 0 < spent < alone and mine.hvps - spent == theirs[e].hvps - alone
                    mine = replace(mine, hvps=theirs[e].hvps)
                assert_same_measurement(mine, theirs[e])
            gd_step(params, g, lrs[e])
        if check is not None:
            check(step, ours, theirs)
        gd_step(stacked, grads, lrs)
    return tracker, singles, stacked


# --------------------------------------------------------------------------- the core, on matrices


class BlockDiagonal:
    """E dense symmetric matrices as one ensemble operator (rows in, rows out)."""

    def __init__(self, blocks: torch.Tensor):
        self.blocks, self.members, self.size = blocks, blocks.shape[0], blocks.shape[1]
        self.device, self.dtype, self.hvps = blocks.device, blocks.dtype, 0

    def matvec(self, v):
        self.hvps += 1
        return (self.blocks @ v.unsqueeze(-1)).squeeze(-1)


def test_batched_lanczos_gives_each_member_what_its_own_lanczos_gives():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 30, 30, dtype=torch.float64, generator=g)
    blocks = a @ a.mT
    blocks[1] = 0.0  # a zero block: every step breaks down
    u = torch.randn(30, dtype=torch.float64, generator=g)
    blocks[2] = 5.0 * torch.outer(u, u) / (u @ u)  # rank one: invariant after one step
    op = BlockDiagonal(blocks)
    starts = [torch.randn(30, dtype=torch.float64, generator=g) for _ in range(4)]
    seeds = [10, 11, 12, 13]
    ours = batched_lanczos(op, k=2, tol=1e-8, max_iter=30, v0=[starts[0], None, starts[2], None], min_iter=[1, 8, 1, 8],
                           generators=[torch.Generator().manual_seed(s) for s in seeds])
    for e in range(4):
        theirs = lanczos(MatrixOperator(blocks[e]), k=2, tol=1e-8, max_iter=30, v0=starts[e] if e in (0, 2) else None,
                         min_iter=1 if e in (0, 2) else 8, generator=torch.Generator().manual_seed(seeds[e]))
        assert_same_measurement(ours[e], theirs, rtol=1e-12)
        exact = torch.linalg.eigvalsh(blocks[e]).flip(0)[:2]
        torch.testing.assert_close(ours[e].eigenvalues, exact, rtol=1e-8, atol=1e-10)
    steps = [r.hvps for r in ours]
    assert steps[2] == 2 < steps[1] == 8 < min(steps[0], steps[3])  # each stops on its own
    assert op.hvps == max(steps)  # one batched product per step serves every member still running


def test_an_inactive_member_is_never_started_and_a_non_finite_one_fails_alone():
    blocks = torch.stack([torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64) * (e + 1)) for e in range(3)])
    blocks[1] = torch.nan  # a diverged member: its rows must not reach the others
    op = BlockDiagonal(blocks)
    ours = batched_lanczos(op, k=1, tol=1e-10, max_iter=10, active=[True, False, True],
                           generators=[torch.Generator().manual_seed(e) for e in range(3)])
    assert ours[1] is None
    for e in (0, 2):
        assert ours[e].converged and abs(ours[e].sharpness - 10.0 * (e + 1)) < 1e-9
    # measured all the same, the non-finite member fails alone, honestly, after one product
    ours = batched_lanczos(op, k=1, tol=1e-10, max_iter=10, generators=[torch.Generator().manual_seed(e) for e in range(3)])
    assert not ours[1].converged and ours[1].hvps == 1 and torch.isnan(ours[1].eigenvalues).all()
    assert all(ours[e].converged and abs(ours[e].sharpness - 10.0 * (e + 1)) < 1e-9 for e in (0, 2))


# --------------------------------------------------------------------------- the tracker, on stacked nets


@pytest.mark.parametrize("options", [
    {"hvp": "auto"},  # the first measurement also pays for timing the products, per member
    {"hvp": "reuse", "k": 2},
    {"hvp": "reuse", "bottom": True, "tol": 1e-6},
], ids=["k1-auto", "k2", "bottom"])
def test_each_member_is_tracked_as_its_separate_run(options):
    def check(step, ours, theirs):
        if step == 0 and options["hvp"] == "auto":
            assert all(r.hvps > r.iterations >= COLD_MIN_ITER for r in ours)
        if step > 0 and len(options) == 1:  # k=1, top only
            assert all(r.iterations < COLD_MIN_ITER for r in ours)  # warm

    tracker, singles, _ = track(Ensemble(seeds=(0, 1, 2, 3)), options, steps=5, check=check)
    for e, single in enumerate(singles):
        ours, theirs = tracker.member_state_dict(e), single.state_dict()
        assert ours.keys() == theirs.keys() and ours["measurements"] == theirs["measurements"] == 5
        assert torch.equal(ours["generator"], theirs["generator"])  # the same draws: the same random starts


def test_eigenvalues_match_each_members_dense_hessian():
    ens = Ensemble(seeds=(4, 5, 6))
    stacked = ens.stacked()
    results = SharpnessTracker(members=3, seed=[1, 2, 3], k=2, tol=1e-10, max_iter=61).measure_members(ens.loss, stacked)
    for e, result in enumerate(results):
        exact = dense_spectrum(ens.member_loss(e), [p[e] for p in stacked])
        assert result.converged
        torch.testing.assert_close(result.eigenvalues, exact[:2], rtol=1e-9, atol=0.0)
        assert result.eigenvectors.shape == (61, 2)


@pytest.mark.parametrize("method", ["exact", "power"])
def test_exact_and_power_per_member_match_separate_runs(method):
    options = {"method": method, "hvp": "reuse", **({"bottom": True, "k": 2} if method == "exact" else {})}
    tracker, _, stacked = track(Ensemble(seeds=(7, 8, 9)), options, steps=2)
    if method == "exact":
        ens = Ensemble(seeds=(7, 8, 9))
        results = tracker.measure_members(ens.loss, stacked)
        for e, result in enumerate(results):
            exact = dense_spectrum(ens.member_loss(e), [p[e] for p in stacked])
            torch.testing.assert_close(result.eigenvalues, exact[:2], rtol=1e-10, atol=0.0)
            torch.testing.assert_close(result.bottom.eigenvalues, exact[-1:], rtol=1e-10, atol=0.0)


def test_members_whose_krylov_space_closes_early_stop_while_the_others_go_on():
    # member 1: zero loss weight (a zero Hessian block); member 2: its own outputs as targets
    # over 3 points (H = 2/3 J^T J, rank <= 3); members 0 and 3 are ordinary fits
    ens = Ensemble(seeds=(0, 1, 2, 3), points=3, weights=(1.0, 0.0, 1.0, 1.0), fit_self=(2,))
    seen = []

    def check(step, ours, theirs):
        seen.append([r.iterations for r in ours])
        assert ours[1].converged and ours[1].sharpness == 0.0
        exact = dense_spectrum(ens.member_loss(2), [p for p in ens.separate()[2]])
        if step == 0:
            assert abs(ours[2].sharpness - float(exact[0])) <= 1e-4 * float(exact[0])

    track(ens, {"hvp": "reuse", "tol": 1e-8}, steps=3, lr=0.02, check=check)
    assert seen[0][1] == seen[0][2] == COLD_MIN_ITER  # restarts until the cold minimum
    for later in seen[1:]:
        assert later[2] <= 4 < max(later[0], later[3])  # warm: closes within rank + 1 steps


def test_an_inactive_member_gets_none_spends_nothing_and_resumes_as_if_skipped():
    ens = Ensemble(seeds=(0, 1, 2))
    skipped = []

    def check(step, ours, theirs):
        if step == 2:
            skipped.append(ours[1])

    tracker, singles, _ = track(ens, {"hvp": "auto"}, steps=5, active=lambda step: [True, step != 2, True], check=check)
    assert skipped == [None]
    assert tracker.member_state_dict(1)["measurements"] == singles[1].state_dict()["measurements"] == 4
    assert tracker.member_state_dict(0)["measurements"] == 5
    assert tracker.measure_members(ens.loss, ens.stacked(), active=[False, False, False]) == [None, None, None]


def test_a_members_state_resumes_as_a_single_run_and_back():
    ens = Ensemble(seeds=(3, 4, 5))
    options = {"hvp": "auto", "k": 2}
    tracker, singles, stacked = track(ens, options, steps=3)
    # member 1's checkpoint (saved as a checkpoint is: torch.save, weights_only load) resumes alone
    buffer = io.BytesIO()
    torch.save(tracker.member_state_dict(1), buffer)
    buffer.seek(0)
    alone = SharpnessTracker(seed=4, **options)
    alone.load_state_dict(torch.load(buffer, weights_only=True))
    # and a single run's state resumes as member 0 of a fresh ensemble
    again = SharpnessTracker(members=3, seed=[3, 4, 5], **options)
    for e in range(3):
        again.load_member_state_dict(e, singles[0].state_dict() if e == 0 else tracker.member_state_dict(e))
    grads = torch.autograd.grad(ens.loss(stacked), stacked, create_graph=True)
    resumed = again.measure_members(ens.loss, stacked, grads, step=3)
    continued = tracker.measure_members(ens.loss, stacked, grads, step=3)
    member = [p[1].detach().requires_grad_(True) for p in stacked]
    assert_same_measurement(alone.measure(ens.member_loss(1), member, step=3), continued[1])
    member = [p[0].detach().requires_grad_(True) for p in stacked]
    assert_same_measurement(resumed[0], singles[0].measure(ens.member_loss(0), member, step=3))
    for e in (1, 2):
        assert_same_measurement(resumed[e], continued[e], rtol=1e-14)
    assert all(r.iterations < COLD_MIN_ITER and r.hvps == r.iterations for r in resumed)  # warm, timings kept


@pytest.mark.parametrize("method", ["lanczos", "power", "exact"])
def test_an_ensemble_of_one_is_the_single_tracker_bitwise(method):
    ens = Ensemble(seeds=(2,))
    stacked = ens.stacked()
    options = {"method": method, "k": 2, "hvp": "reuse", "seed": 5}
    one, single = SharpnessTracker(members=1, **options), SharpnessTracker(**options)
    for step in range(3):
        grads = torch.autograd.grad(ens.loss(stacked), stacked, create_graph=True)
        (ours,), theirs = one.measure_members(ens.loss, stacked, grads, step=step), single.measure(ens.loss, stacked, grads, step=step)
        assert torch.equal(ours.eigenvalues, theirs.eigenvalues) and torch.equal(ours.eigenvectors, theirs.eigenvectors)
        assert (ours.hvps, ours.converged) == (theirs.hvps, theirs.converged)
        gd_step(stacked, grads, 0.05)


def test_bad_ensemble_input_is_refused_with_what_is_allowed():
    ens = Ensemble(seeds=(0, 1))
    with pytest.raises(ValueError, match="one seed per member"):
        SharpnessTracker(members=3, seed=[1, 2])
    tracker = SharpnessTracker(members=2)
    with pytest.raises(ValueError, match="leading member dimension of 2"):
        tracker.measure_members(ens.member_loss(0), ens.separate()[0])
    with pytest.raises(ValueError, match="one flag per member"):
        tracker.measure_members(ens.loss, ens.stacked(), active=[True])
    with pytest.raises(ValueError, match="measure_members"):
        tracker.measure(ens.loss, ens.stacked())

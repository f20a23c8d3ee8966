"""Specification of neuroscope.curvature: sharpness and top eigenpairs against dense Hessians."""

from __future__ import annotations

import io

import pytest
import torch
from torch.func import functional_call

from neuroscope.curvature import (
    EigenResult,
    HessianOperator,
    HvpCosts,
    SharpnessTracker,
    exact_hessian,
    lanczos,
    measure_hvp_costs,
    power_iteration,
)


# torch's own forward-mode AD loads its jvp decompositions through torch.jit.script, once;
# these nets are tiny, so they run on one thread (conftest.one_thread)
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("one_thread"),
]


# --------------------------------------------------------------------------- objectives


def mlp(widths=(1, 16, 16, 1), *, seed=0, dtype=torch.float64, device="cpu") -> torch.nn.Sequential:
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.Tanh()]
    return torch.nn.Sequential(*layers[:-1]).to(device=device, dtype=dtype)


def objective(net, *, data_term="mse", l2=0.0, anti=0.0, n_points=32):
    """loss_fn(params) for a 1D sin fit: data term, + l2 * ||theta||^2, - anti * mean(f^2)."""
    p0 = next(net.parameters())
    names = [name for name, _ in net.named_parameters()]
    x = torch.linspace(-3, 3, n_points, dtype=p0.dtype, device=p0.device)[:, None]
    y = torch.sin(x)

    def loss_fn(params):
        f = functional_call(net, dict(zip(names, params)), (x,))
        r = f - y
        loss = (r**2).mean() if data_term == "mse" else r.abs().mean()
        if l2:
            loss = loss + l2 * sum((p**2).sum() for p in params)
        if anti:
            loss = loss - anti * (f**2).mean()
        return loss

    return loss_fn


def pinn_objective(net):
    """A PINN-like loss: mean (u'')^2 + boundary term, derivatives taken w.r.t. the inputs."""
    p0 = next(net.parameters())
    names = [name for name, _ in net.named_parameters()]
    x = torch.linspace(-1, 1, 16, dtype=p0.dtype)[:, None].requires_grad_(True)
    edges = torch.tensor([[-1.0], [1.0]], dtype=p0.dtype)

    def loss_fn(params):
        state = dict(zip(names, params))
        u = functional_call(net, state, (x,))
        du = torch.autograd.grad(u.sum(), x, create_graph=True)[0]
        d2u = torch.autograd.grad(du.sum(), x, create_graph=True)[0]
        boundary = functional_call(net, state, (edges,)) - torch.tensor([[0.0], [1.0]], dtype=p0.dtype)
        return (d2u**2).mean() + (boundary**2).mean()

    return loss_fn


def reference_hessian(loss_fn, params) -> torch.Tensor:
    """Dense Hessian by torch.autograd.functional (independent of the code under test)."""
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def flat_loss(flat):
        return loss_fn([c.view(s) for c, s in zip(torch.split(flat, sizes), shapes)])

    flat = torch.cat([p.detach().reshape(-1) for p in params])
    return torch.autograd.functional.hessian(flat_loss, flat, vectorize=True)


def reference_eigh(hessian: torch.Tensor):
    values, vectors = torch.linalg.eigh(hessian)
    return values.flip(0), vectors.flip(1)  # largest algebraic first


def assert_top_eigenpairs_match(result: EigenResult, hessian: torch.Tensor, k: int, *, rtol=1e-4, cos=0.999):
    """Eigenvalue i within rtol of the dense one (relative to itself), eigenvector |cos| >= cos."""
    values, vectors = reference_eigh(hessian)
    for i in range(k):
        error = abs(result.eigenvalues[i] - values[i])
        assert error <= rtol * abs(values[i]), (i, result.eigenvalues, values[:k])
        overlap = (result.eigenvectors[:, i].to(vectors.dtype) @ vectors[:, i]).abs()
        assert overlap >= cos, (i, overlap)


def gd_step(loss_fn, params, lr):
    grads = torch.autograd.grad(loss_fn(params), params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p -= lr * g


def gapped_spectrum() -> torch.Tensor:
    """10, then 49 eigenvalues evenly in [1, 5]."""
    return torch.cat([torch.tensor([10.0]), torch.linspace(5.0, 1.0, 49)]).to(torch.float64)


class DiagonalOperator:
    """diag(values) as an operator: a Hessian known in closed form."""

    def __init__(self, values: torch.Tensor):
        self.values, self.size = values, values.numel()
        self.device, self.dtype, self.hvps = values.device, values.dtype, 0

    def matvec(self, v):
        self.hvps += 1
        return self.values * v


# --------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sharpness_matches_exact_hessian(seed):
    net = mlp(seed=seed)
    loss_fn = objective(net)
    params = list(net.parameters())
    result = SharpnessTracker(seed=seed).measure(loss_fn, params)
    assert result.converged
    assert result.eigenvectors.shape == (sum(p.numel() for p in params), 1)
    hessian = reference_hessian(loss_fn, params)
    top = reference_eigh(hessian)[0][0]
    assert abs(result.sharpness - top) <= 1e-4 * top
    assert_top_eigenpairs_match(result, hessian, 1)


def test_top3_eigenpairs_match_exact_hessian():
    net = mlp(seed=3)
    loss_fn = objective(net)
    params = list(net.parameters())
    result = SharpnessTracker(k=3, max_iter=60).measure(loss_fn, params)
    assert result.converged
    assert torch.all(result.eigenvalues[:-1] >= result.eigenvalues[1:])
    assert_top_eigenpairs_match(result, reference_hessian(loss_fn, params), 3)


def test_sharpness_is_the_largest_algebraic_eigenvalue_not_the_largest_magnitude():
    net = mlp(seed=0)
    loss_fn = objective(net, anti=2.0)  # strongly concave direction: a big negative eigenvalue
    params = list(net.parameters())
    values, _ = reference_eigh(reference_hessian(loss_fn, params))
    assert -values[-1] > 1.5 * values[0] > 0, "the construction must make the negative end dominate"
    for method in ("lanczos", "exact"):
        result = SharpnessTracker(method=method).measure(loss_fn, params)
        assert abs(result.sharpness - values[0]) <= 1e-4 * values[0], method
    # the PyHessian reference finds the largest magnitude instead, as documented
    power = SharpnessTracker(method="power").measure(loss_fn, params)
    assert power.sharpness < 0


def test_sharpness_includes_the_l2_term():
    net = mlp(seed=1)
    params = list(net.parameters())
    plain, with_l2 = objective(net), objective(net, l2=0.05)
    hessian = reference_hessian(with_l2, params)
    assert torch.allclose(hessian, reference_hessian(plain, params) + 0.1 * torch.eye(len(hessian)))
    result = SharpnessTracker().measure(with_l2, params)
    assert_top_eigenpairs_match(result, hessian, 1)


def test_sharpness_of_a_non_quadratic_l1_loss():
    net = mlp(seed=2)
    loss_fn = objective(net, data_term="l1")
    params = list(net.parameters())
    result = SharpnessTracker().measure(loss_fn, params)
    assert result.converged
    assert_top_eigenpairs_match(result, reference_hessian(loss_fn, params), 1)


@pytest.mark.parametrize("variant", ["reuse", "reuse-given-grads", "recompute", "func"])
def test_hvp_variants_agree_with_the_dense_hessian(variant):
    net = mlp(seed=4)
    loss_fn = objective(net, l2=1e-3)
    params = list(net.parameters())
    hessian = reference_hessian(loss_fn, params)
    grads = None
    if variant == "reuse-given-grads":
        variant, grads = "reuse", torch.autograd.grad(loss_fn(params), params, create_graph=True)
    op = HessianOperator(loss_fn, params, hvp=variant, grads=grads)
    v = torch.randn(op.size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for _ in range(2):  # twice: the kept graph must survive the first product
        assert torch.allclose(op.matvec(v), hessian @ v, rtol=1e-9, atol=1e-11)
    assert op.hvps == 2


def test_exact_method_matches_eigh_of_an_independent_hessian():
    net = mlp((1, 8, 8, 1), seed=5)
    loss_fn = objective(net)
    params = list(net.parameters())
    hessian = reference_hessian(loss_fn, params)
    assert torch.allclose(exact_hessian(loss_fn, params), hessian, rtol=1e-10, atol=1e-12)
    result = SharpnessTracker(method="exact", k=3).measure(loss_fn, params)
    values, _ = reference_eigh(hessian)
    assert torch.allclose(result.eigenvalues, values[:3], rtol=1e-10)
    assert result.converged and result.hvp == "exact"
    assert torch.all(result.residuals <= 1e-10 * values.abs().max())
    assert_top_eigenpairs_match(result, hessian, 3, rtol=1e-10, cos=1 - 1e-10)


def test_power_iteration_matches_when_the_top_eigenvalue_dominates_in_magnitude():
    net = mlp(seed=0)
    loss_fn = objective(net)
    params = list(net.parameters())
    values, _ = reference_eigh(reference_hessian(loss_fn, params))
    assert values[0] > -values[-1]
    op = HessianOperator(loss_fn, params)
    tight = power_iteration(op, tol=1e-10, max_iter=2000, generator=torch.Generator().manual_seed(0))
    assert abs(tight.sharpness - values[0]) <= 1e-6 * values[0]
    pyhessian_like = SharpnessTracker(method="power", tol=1e-3, max_iter=100).measure(loss_fn, params)
    assert pyhessian_like.converged and pyhessian_like.hvps <= 100
    assert abs(pyhessian_like.sharpness - values[0]) <= 1e-2 * values[0]


def test_power_method_obeys_the_configured_tol_and_max_iter():
    net = mlp(seed=0)
    loss_fn = objective(net)
    params = list(net.parameters())
    capped = SharpnessTracker(method="power", tol=1e-12, max_iter=3, hvp="reuse").measure(loss_fn, params)
    assert capped.hvps == 3 and not capped.converged
    loose = SharpnessTracker(method="power", tol=1e-1, max_iter=100, hvp="reuse").measure(loss_fn, params)
    tight = SharpnessTracker(method="power", tol=1e-8, max_iter=100, hvp="reuse").measure(loss_fn, params)
    assert loose.converged and tight.converged and loose.hvps < tight.hvps


# --------------------------------------------------------------------------- honest reports


def test_reported_residuals_are_the_true_residuals():
    net = mlp(seed=6)
    loss_fn = objective(net)
    params = list(net.parameters())
    hessian = reference_hessian(loss_fn, params)
    op = HessianOperator(loss_fn, params)
    for max_iter in (5, 12, 30):  # unconverged and converged
        result = lanczos(op, k=3, tol=1e-6, max_iter=max_iter, generator=torch.Generator().manual_seed(1))
        y, theta = result.eigenvectors, result.eigenvalues
        true = torch.linalg.vector_norm(hessian @ y - y * theta, dim=0)
        assert torch.allclose(result.residuals, true, rtol=1e-6, atol=1e-10), (max_iter, result.residuals)


def test_not_converged_when_max_iter_is_too_small():
    net = mlp(seed=0)
    loss_fn = objective(net)
    params = list(net.parameters())
    result = SharpnessTracker(max_iter=3, tol=1e-8).measure(loss_fn, params)
    assert not result.converged
    assert result.iterations == 3
    assert result.residuals[0] > 1e-8 * abs(result.sharpness)


def test_hvp_count_is_what_the_operator_saw():
    net = mlp(seed=0)
    loss_fn = objective(net)
    op = HessianOperator(loss_fn, list(net.parameters()))
    result = lanczos(op, k=2, tol=1e-6, max_iter=30, generator=torch.Generator().manual_seed(0))
    assert result.hvps == op.hvps == result.iterations


# --------------------------------------------------------------------------- Krylov edge cases


def test_lanczos_stops_at_once_from_an_exact_eigenvector():
    op = DiagonalOperator(gapped_spectrum())
    start = torch.zeros(50, dtype=torch.float64)
    start[0] = 1.0
    result = lanczos(op, k=1, tol=1e-8, max_iter=30, v0=start)
    assert result.converged and result.hvps == 1 and result.sharpness == 10.0


def test_lanczos_restarts_when_the_krylov_space_collapses_before_k_pairs():
    op = DiagonalOperator(gapped_spectrum())
    start = torch.zeros(50, dtype=torch.float64)
    start[0] = 1.0
    result = lanczos(op, k=2, tol=1e-8, max_iter=40, v0=start, generator=torch.Generator().manual_seed(0))
    assert result.converged
    assert torch.allclose(result.eigenvalues, torch.tensor([10.0, 5.0], dtype=torch.float64))


def test_cold_minimum_iterations_escape_a_start_on_the_wrong_eigenvector():
    op = DiagonalOperator(gapped_spectrum())
    second = torch.zeros(50, dtype=torch.float64)
    second[1] = 1.0
    careless = lanczos(op, k=1, tol=1e-8, max_iter=30, v0=second)
    assert careless.converged and careless.sharpness == 5.0  # an invariant subspace looks converged
    generator = torch.Generator().manual_seed(0)
    careful = lanczos(op, k=1, tol=1e-8, max_iter=30, v0=second, min_iter=8, generator=generator)
    assert careful.converged and abs(careful.sharpness - 10.0) < 1e-8


def test_lanczos_on_a_space_smaller_than_max_iter():
    op = DiagonalOperator(torch.tensor([3.0, -7.0, 1.0], dtype=torch.float64))
    result = lanczos(op, k=3, tol=1e-10, max_iter=30, generator=torch.Generator().manual_seed(0))
    assert result.converged and result.hvps == 3
    assert torch.allclose(result.eigenvalues, torch.tensor([3.0, 1.0, -7.0], dtype=torch.float64))


# --------------------------------------------------------------------------- warm starts and state


def test_warm_start_uses_fewer_hvps_than_cold_and_stays_accurate():
    net = mlp(seed=0)
    loss_fn = objective(net)
    params = list(net.parameters())
    tracker = SharpnessTracker(hvp="reuse")
    tracker.measure(loss_fn, params)
    gd_step(loss_fn, params, lr=0.02)  # a slightly perturbed net
    warm = tracker.measure(loss_fn, params)
    cold_tracker = SharpnessTracker(hvp="reuse").measure(loss_fn, params)
    cold_lanczos = lanczos(HessianOperator(loss_fn, params), generator=torch.Generator().manual_seed(0))
    assert warm.hvps < cold_lanczos.hvps <= cold_tracker.hvps
    assert warm.converged
    assert_top_eigenpairs_match(warm, reference_hessian(loss_fn, params), 1)


def test_warm_start_comes_from_the_last_step_of_the_same_parity():
    # GD at the edge of stability alternates between two states: A, B, A, B ... Measuring A
    # again should start from A's eigenvector (two steps back), not from B's.
    net = mlp(seed=0)
    loss_fn = objective(net)
    params = list(net.parameters())
    state_a = [p.detach().clone() for p in params]

    def set_state(values):
        with torch.no_grad():
            for p, v in zip(params, values):
                p.copy_(v)

    def alternate(tracker, steps):
        results = []
        for step in range(3):
            set_state(state_a)
            if step % 2:
                gd_step(loss_fn, params, lr=0.3)  # state B: far enough to move the eigenvector
            results.append(tracker.measure(loss_fn, params, step=step if steps else None))
        return results

    with_steps = alternate(SharpnessTracker(hvp="reuse"), steps=True)
    without = alternate(SharpnessTracker(hvp="reuse"), steps=False)
    assert with_steps[2].hvps == 1 < without[2].hvps  # A's own eigenvector: converged at once
    assert with_steps[2].converged and torch.allclose(with_steps[2].eigenvalues, without[2].eigenvalues, rtol=1e-6)
    restored = SharpnessTracker(hvp="reuse")
    tracker = SharpnessTracker(hvp="reuse")
    alternate(tracker, steps=True)
    restored.load_state_dict(tracker.state_dict())
    set_state(state_a)
    assert restored.measure(loss_fn, params, step=4).hvps == 1  # the parity memory survives resume


def test_warm_start_with_k3_stays_accurate_and_is_cheaper():
    net = mlp(seed=3)
    loss_fn = objective(net)
    params = list(net.parameters())
    tracker = SharpnessTracker(k=3, max_iter=60, hvp="reuse")
    cold = tracker.measure(loss_fn, params)
    gd_step(loss_fn, params, lr=0.005)
    warm = tracker.measure(loss_fn, params)
    assert warm.converged and warm.hvps < cold.hvps
    assert_top_eigenpairs_match(warm, reference_hessian(loss_fn, params), 3)


def test_state_dict_resumes_warm_through_torch_save():
    net = mlp(seed=1)
    loss_fn = objective(net)
    params = list(net.parameters())
    tracker = SharpnessTracker(hvp="auto")
    tracker.measure(loss_fn, params)
    buffer = io.BytesIO()
    torch.save(tracker.state_dict(), buffer)
    gd_step(loss_fn, params, lr=0.02)
    continued = tracker.measure(loss_fn, params)
    resumed_tracker = SharpnessTracker(hvp="auto")
    buffer.seek(0)
    resumed_tracker.load_state_dict(torch.load(buffer, weights_only=True))
    resumed = resumed_tracker.measure(loss_fn, params)
    assert resumed.hvps == continued.hvps  # warm, and no second timing of the HVP variants
    assert torch.allclose(resumed.eigenvalues, continued.eigenvalues, rtol=1e-12)


# --------------------------------------------------------------------------- choosing the product


def test_auto_times_the_variants_once_and_charges_it_to_the_first_measurement():
    net = mlp(seed=0)
    loss_fn = objective(net)
    params = list(net.parameters())
    tracker = SharpnessTracker()
    grads = torch.autograd.grad(loss_fn(params), params, create_graph=True)
    first = tracker.measure(loss_fn, params, grads=grads)
    assert set(tracker.costs.hvp) == {"reuse", "func"} and not tracker.costs.excluded
    assert first.hvp in tracker.costs.hvp
    assert first.hvps == first.iterations + tracker.costs.hvps
    second = tracker.measure(loss_fn, params, grads=grads)
    assert second.hvps == second.iterations


def test_hvp_choice_minimizes_expected_time_of_a_measurement():
    costs = HvpCosts(gradient=1.0, graph=1.3, hvp={"reuse": 1.6, "recompute": 2.7, "func": 3.3})
    assert costs.pick(graph_given=True, expected_hvps=3) == "reuse"
    assert costs.pick(graph_given=False, expected_hvps=3) == "reuse"  # 1.3 + 4.8 < 8.1
    slow_graph = HvpCosts(gradient=1.0, graph=9.0, hvp={"reuse": 1.6, "recompute": 2.7})
    assert slow_graph.pick(graph_given=False, expected_hvps=2) == "recompute"
    assert slow_graph.pick(graph_given=True, expected_hvps=2) == "reuse"
    assert costs.relative()["func"] == pytest.approx(3.3)
    close_call = HvpCosts(gradient=1.0, graph=1.0, hvp={"reuse": 1.0, "func": 0.9})
    assert close_call.pick(graph_given=True, expected_hvps=4) == "reuse"  # within timing noise
    fast_func = HvpCosts(gradient=1.0, graph=1.0, hvp={"reuse": 1.0, "func": 0.5})
    assert fast_func.pick(graph_given=True, expected_hvps=4) == "func"


def test_pinn_loss_falls_back_to_double_backward():
    net = mlp((1, 8, 8, 1), seed=7)
    loss_fn = pinn_objective(net)
    params = list(net.parameters())
    hessian = reference_hessian(loss_fn, params)
    costs = measure_hvp_costs(loss_fn, params)
    assert "func" in costs.excluded and {"reuse", "recompute"} <= set(costs.hvp)
    tracker = SharpnessTracker(hvp="auto")
    result = tracker.measure(loss_fn, params)
    assert result.hvp in ("reuse", "recompute") and result.converged
    assert_top_eigenpairs_match(result, hessian, 1)
    assert torch.allclose(exact_hessian(loss_fn, params), hessian, rtol=1e-10, atol=1e-12)
    exact = SharpnessTracker(method="exact", k=2).measure(loss_fn, params)
    assert_top_eigenpairs_match(exact, hessian, 2, rtol=1e-10)


def test_float32_network_is_measured_in_its_dtype_with_float64_reductions():
    net64 = mlp(seed=0)
    net32 = mlp(seed=0, dtype=torch.float32)
    params32 = list(net32.parameters())
    result = SharpnessTracker().measure(objective(net32), params32)
    assert result.eigenvectors.dtype == torch.float32 and result.eigenvalues.dtype == torch.float64
    assert_top_eigenpairs_match(result, reference_hessian(objective(net64), list(net64.parameters())), 1)


def test_measure_works_inside_no_grad():
    net = mlp(seed=0)
    loss_fn = objective(net)
    params = list(net.parameters())
    with torch.no_grad():
        result = SharpnessTracker(hvp="recompute").measure(loss_fn, params)
    assert result.converged and result.sharpness > 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sharpness_on_cuda_matches_exact_hessian_on_cpu():
    net = mlp(seed=0, dtype=torch.float32, device="cuda")
    result = SharpnessTracker(k=2).measure(objective(net), list(net.parameters()))
    assert result.eigenvectors.device.type == "cuda"
    net64 = mlp(seed=0)
    hessian = reference_hessian(objective(net64), list(net64.parameters()))
    assert_top_eigenpairs_match(
        EigenResult(result.eigenvalues, result.eigenvectors.cpu(), result.residuals, 0, 0, True), hessian, 2
    )

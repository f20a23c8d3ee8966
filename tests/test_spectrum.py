"""Specification of the whole-spectrum measurements (neuroscope.curvature): per-term sharpness, the
bottom of the spectrum, the Gauss-Newton matrix, Hutchinson's trace and the SLQ density, each
against the dense matrices of small float64 nets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from neuroscope import compose
from neuroscope.typed import to_config
from neuroscope.curvature import (
    CurvatureSurvey, DensityGrid, GaussNewtonOperator, HessianOperator, MatrixOperator, SharpnessTracker,
    bottom_columns, exact_hessian, hutchinson_trace, lanczos, spectral_density,
)
from neuroscope.data import make as make_problem
from neuroscope.losses import Objective, build_pde
from neuroscope.run import build_model, build_target, seed_everything


# torch's own forward-mode AD loads its jvp decompositions through torch.jit.script, once;
# these nets are tiny, so they run on one thread (conftest.one_thread)
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("one_thread"),
]


# --------------------------------------------------------------------------- objectives


class Setup:
    """A composed config's objective as pure functions of the parameter tensors."""

    def __init__(self, *overrides: str):
        config = to_config(compose(["device=cpu", "device.dtype=float64", "model.width=8", *overrides]))
        pde = build_pde(config.loss, config.input_dim)
        self.problem = make_problem(config, build_target(config.function), pde=pde, device=torch.device("cpu"),
                                    dtype=torch.float64)
        seed_everything(config.seed)
        self.model = build_model(config.model, config.input_dim).to(dtype=torch.float64)
        self.objective = Objective(config.loss, self.problem, pde)
        self.names = [n for n, _ in self.model.named_parameters()]
        self.params = [p.detach().clone().requires_grad_(True) for p in self.model.parameters()]

    def net(self, params):
        return lambda x: functional_call(self.model, dict(zip(self.names, params)), (x,))

    def loss_fn(self, params):
        return self.objective(self.net(params), params)[0]

    def terms_fn(self, params):
        return self.objective(self.net(params), params)[1]

    def residuals_fn(self, params):
        return self.objective.residuals(self.net(params), params)

    def term_fn(self, name):
        return lambda params: self.terms_fn(params)[name]


PINN = ("loss=poisson1d", "loss.n_collocation=24", "loss.data_weight=0.5", "data.n_train=12", "loss.l2_weight=1e-3")


@pytest.fixture(scope="module")
def pinn() -> Setup:
    """Poisson 1D with all four terms: data, l2, pde and bc."""
    return Setup(*PINN)


def dense_eigenvalues(matrix: torch.Tensor) -> np.ndarray:
    return torch.linalg.eigvalsh(matrix.to(torch.float64)).numpy()


def relative_error(value: float, reference: float) -> float:
    return abs(value - reference) / abs(reference)


# --------------------------------------------------------------------------- per-term sharpness


def test_each_terms_sharpness_matches_the_top_eigenvalue_of_that_terms_dense_hessian(pinn):
    survey = CurvatureSurvey(every=1, terms=pinn.objective.term_names, tol=1e-10, max_iter=80)
    row = survey.measure(0, loss_fn=pinn.loss_fn, terms_fn=pinn.terms_fn, params=pinn.params)
    assert set(pinn.objective.term_names) == {"data", "l2", "pde", "bc"}
    for name in pinn.objective.term_names:
        top = dense_eigenvalues(exact_hessian(pinn.term_fn(name), pinn.params))[-1]
        assert relative_error(row[f"sharpness_{name}"], top) <= 1e-6, (name, row[f"sharpness_{name}"], top)
    assert math.isclose(row["sharpness_l2"], 2 * 1e-3, rel_tol=1e-9)  # the Hessian of w |theta|^2 is 2w I


def test_per_term_hessians_add_up_to_the_objectives(pinn):
    whole = exact_hessian(pinn.loss_fn, pinn.params)
    parts = sum(exact_hessian(pinn.term_fn(name), pinn.params) for name in pinn.objective.term_names)
    assert torch.allclose(whole, parts, rtol=1e-10, atol=1e-10 * whole.abs().max())


def test_per_term_trackers_warm_start_each_term_from_its_own_last_vector(pinn):
    survey = CurvatureSurvey(every=1, terms=["pde", "bc"], tol=1e-8, max_iter=80)
    survey.measure(0, loss_fn=pinn.loss_fn, terms_fn=pinn.terms_fn, params=pinn.params)
    cold = {name: survey._trackers[name]._eigenvectors[:, 0] for name in ("pde", "bc")}
    again = survey.measure(2, loss_fn=pinn.loss_fn, terms_fn=pinn.terms_fn, params=pinn.params)
    for name in ("pde", "bc"):
        warm = SharpnessTracker(tol=1e-8, max_iter=80, hvp="reuse")
        result = warm.measure(pinn.term_fn(name), pinn.params)
        assert relative_error(again[f"sharpness_{name}"], result.sharpness) <= 1e-6
        assert abs(float(cold[name] @ survey._trackers[name]._eigenvectors[:, 0])) > 1 - 1e-8
    assert abs(float(cold["pde"] @ cold["bc"])) < 0.99  # each term has its own top direction


# --------------------------------------------------------------------------- the bottom of the spectrum


@pytest.mark.parametrize("overrides", [PINN, ("function=sin", "data.n_train=24")], ids=["pinn", "mse"])
def test_lambda_min_from_the_same_lanczos_run_matches_the_dense_hessian(overrides):
    setup = Setup(*overrides)
    values = dense_eigenvalues(exact_hessian(setup.loss_fn, setup.params))
    assert values[0] < 0  # an indefinite Hessian: there is negative curvature to find
    op = HessianOperator(setup.loss_fn, setup.params)
    result = lanczos(op, tol=1e-10, max_iter=op.size, bottom=True, generator=torch.Generator().manual_seed(0))
    assert result.converged and result.hvps < op.size
    assert relative_error(result.sharpness, values[-1]) <= 1e-6
    assert relative_error(float(result.bottom.eigenvalues[0]), values[0]) <= 1e-6
    true_residual = op.matvec(result.bottom.eigenvectors[:, 0]) - result.bottom.eigenvalues[0] * result.bottom.eigenvectors[:, 0]
    assert float(torch.linalg.vector_norm(true_residual)) <= 1e-8 * abs(values[-1])


def test_lambda_min_needs_more_lanczos_steps_than_the_top_alone(pinn):
    op = HessianOperator(pinn.loss_fn, pinn.params)
    top = lanczos(op, tol=1e-8, max_iter=op.size, generator=torch.Generator().manual_seed(0))
    both = lanczos(op, tol=1e-8, max_iter=op.size, bottom=True, generator=torch.Generator().manual_seed(0))
    assert both.hvps > top.hvps and top.bottom is None


def test_tracker_with_bottom_reports_lambda_min_columns_warm(pinn):
    values = dense_eigenvalues(exact_hessian(pinn.loss_fn, pinn.params))
    tracker = SharpnessTracker(tol=1e-9, max_iter=100, hvp="reuse", bottom=True)
    cold = tracker.measure(pinn.loss_fn, pinn.params, step=0)
    warm = tracker.measure(pinn.loss_fn, pinn.params, step=2)
    columns = bottom_columns(warm)
    assert warm.hvps < cold.hvps
    assert relative_error(columns["lambda_min"], values[0]) <= 1e-6
    assert math.isclose(columns["sharpness_over_abs_lambda_min"], values[-1] / abs(values[0]), rel_tol=1e-6)
    assert columns["lambda_min_residual"] <= 1e-9 * values[-1]


def test_the_exact_method_gives_the_bottom_pair_too(pinn):
    tracker = SharpnessTracker(method="exact", bottom=True)
    result = tracker.measure(pinn.loss_fn, pinn.params)
    values = dense_eigenvalues(exact_hessian(pinn.loss_fn, pinn.params))
    assert math.isclose(float(result.bottom.eigenvalues[0]), values[0], rel_tol=1e-12)


def test_power_iteration_cannot_be_asked_for_the_bottom():
    with pytest.raises(ValueError, match="smallest"):
        SharpnessTracker(method="power", bottom=True)


# --------------------------------------------------------------------------- Gauss-Newton


def dense_gauss_newton(residuals_fn, params) -> torch.Tensor:
    """sum_t 2 c_t J_t^T J_t with J_t built row by row by autograd (no double-vjp trick)."""
    total = 0
    for r, c in residuals_fn(params).values():
        rows = []
        for ri in r.reshape(-1):
            grads = torch.autograd.grad(ri, params, retain_graph=True, allow_unused=True)
            rows.append(torch.cat([torch.zeros_like(p).reshape(-1) if g is None else g.reshape(-1) for g, p in zip(grads, params)]))
        jacobian = torch.stack(rows)
        total = total + 2 * c * jacobian.T @ jacobian
    return total


def test_gauss_newton_products_and_top_eigenvalue_match_the_dense_jtj(pinn):
    dense = dense_gauss_newton(pinn.residuals_fn, pinn.params)
    op = GaussNewtonOperator(pinn.residuals_fn, pinn.params)
    v = torch.randn(op.size, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(op.matvec(v), dense @ v, rtol=1e-10, atol=1e-12 * float(dense.abs().max()))
    result = lanczos(op, tol=1e-10, max_iter=80, generator=torch.Generator().manual_seed(0))
    assert relative_error(result.sharpness, dense_eigenvalues(dense)[-1]) <= 1e-6
    assert dense_eigenvalues(dense)[0] >= -1e-10 * dense_eigenvalues(dense)[-1]  # G is positive semi-definite


def test_gauss_newton_differs_from_the_hessian_by_the_residual_curvature(pinn):
    hessian = exact_hessian(pinn.loss_fn, pinn.params)
    dense = dense_gauss_newton(pinn.residuals_fn, pinn.params)
    assert float(torch.linalg.matrix_norm(hessian - dense)) > 1e-3 * float(torch.linalg.matrix_norm(hessian))


def test_gauss_newton_equals_the_hessian_when_the_residuals_are_linear_in_the_parameters():
    setup = Setup("function=sin", "model.depth=0", "data.n_train=12", "loss.l2_weight=0.1")
    op = GaussNewtonOperator(setup.residuals_fn, setup.params)
    product = torch.stack([op.matvec(e) for e in torch.eye(op.size, dtype=torch.float64)], dim=1)
    assert torch.allclose(product, exact_hessian(setup.loss_fn, setup.params), rtol=1e-10, atol=1e-12)


def test_an_l1_data_term_has_no_gauss_newton_matrix():
    setup = Setup("function=sin", "loss=l1")
    with pytest.raises(ValueError, match="not a sum of squares"):
        setup.residuals_fn(setup.params)


# --------------------------------------------------------------------------- trace


def test_hutchinson_trace_is_within_three_standard_errors_of_the_exact_trace(pinn):
    exact = float(exact_hessian(pinn.loss_fn, pinn.params).trace())
    op = HessianOperator(pinn.loss_fn, pinn.params)
    estimate = hutchinson_trace(op, probes=200, generator=torch.Generator().manual_seed(0))
    assert estimate.hvps == op.hvps == 200
    assert abs(estimate.trace - exact) <= 3 * estimate.se
    assert 0 < estimate.se < 0.2 * abs(exact)


def test_hutchinson_standard_error_shrinks_as_one_over_root_probes(pinn):
    op = MatrixOperator(exact_hessian(pinn.loss_fn, pinn.params))
    generator = torch.Generator().manual_seed(1)
    few, many = (hutchinson_trace(op, probes=p, generator=generator) for p in (100, 1600))
    assert 3.2 <= few.se / many.se <= 4.8  # sqrt(1600 / 100) = 4


def test_hutchinson_is_exact_for_a_diagonal_matrix():
    values = torch.linspace(-2.0, 5.0, 30, dtype=torch.float64)
    estimate = hutchinson_trace(MatrixOperator(torch.diag(values)), probes=5)
    assert math.isclose(estimate.trace, float(values.sum()), rel_tol=1e-12) and estimate.se < 1e-12


# --------------------------------------------------------------------------- spectral density


@pytest.mark.slow
def test_slq_moments_match_the_dense_eigenvalues_within_two_percent():
    """Moments 1-4 are polynomials of degree <= 5, exact per probe with 3 Lanczos steps; what is
    left is the probes' variance: one probe's relative standard error here is at most 0.97,
    so 20000 probes put 2% beyond three standard errors."""
    setup = Setup("function=sin", "data.n_train=24")
    hessian = exact_hessian(setup.loss_fn, setup.params)
    values = dense_eigenvalues(hessian)
    slq = spectral_density(MatrixOperator(hessian), probes=20000, steps=3, generator=torch.Generator().manual_seed(0))
    sigma = 5e-3 * values[-1]
    grid = np.linspace(values[0] - 8 * sigma, values[-1] + 8 * sigma, 2001)
    density = slq.on_grid(grid, sigma)
    for order in range(1, 5):
        reference = float(np.mean(values**order))
        assert relative_error(slq.moment(order), reference) <= 0.02, (order, slq.moment(order), reference)
        # the broadened density's moments, up to the Gaussian's own (sigma^2 terms, < 0.2% here)
        assert relative_error(float(np.trapezoid(density * grid**order, grid)), reference) <= 0.02


def test_slq_density_integrates_to_one_and_its_top_node_is_the_sharpness(pinn):
    op = HessianOperator(pinn.loss_fn, pinn.params)
    values = dense_eigenvalues(exact_hessian(pinn.loss_fn, pinn.params))
    slq = spectral_density(op, probes=4, steps=40, generator=torch.Generator().manual_seed(0))
    assert slq.hvps == op.hvps == 4 * 40
    assert np.allclose(slq.weights.sum(axis=1), 1.0, atol=1e-12)
    assert relative_error(slq.nodes.max(), values[-1]) <= 1e-6
    assert relative_error(slq.nodes.min(), values[0]) <= 1e-3
    sigma = 0.01 * (values[-1] - values[0])
    grid = np.linspace(values[0] - 8 * sigma, values[-1] + 8 * sigma, 4001)
    assert math.isclose(float(np.trapezoid(slq.on_grid(grid, sigma), grid)), 1.0, rel_tol=1e-6)


def test_symlog_density_grid_integrates_to_one_over_the_log_axis(pinn):
    grid = DensityGrid(every=1, probes=3, steps=20, sigma=0.1, points=721)
    survey = CurvatureSurvey(density=grid)
    assert survey.due(0) and survey.columns() == []
    survey.measure(0, loss_fn=pinn.loss_fn, terms_fn=pinn.terms_fn, params=pinn.params)
    spectrum = survey.spectrum()
    assert spectrum["density"].shape == (1, 721) and list(spectrum["step"]) == [0]
    assert math.isclose(float(np.trapezoid(spectrum["density"][0], spectrum["coordinate"])), 1.0, rel_tol=1e-6)
    assert np.all(np.diff(spectrum["eigenvalue"]) > 0) and spectrum["eigenvalue"][-1] == pytest.approx(1e6)


# --------------------------------------------------------------------------- the survey's schedule


def test_survey_measures_each_quantity_on_its_own_schedule(pinn):
    survey = CurvatureSurvey(every=2, terms=["pde"], trace_probes=3, trace_every=3,
                             density=DensityGrid(every=5, probes=1, steps=5, points=11))
    assert survey.columns() == ["sharpness_pde", "trace", "trace_se"]
    rows = {step: survey.measure(step, loss_fn=pinn.loss_fn, terms_fn=pinn.terms_fn, params=pinn.params)
            for step in range(7) if survey.due(step)}
    assert sorted(rows) == [0, 2, 3, 4, 5, 6]
    assert [sorted(rows[s]) for s in (3, 4)] == [["trace", "trace_se"], ["sharpness_pde"]]
    assert survey.density_steps == [0, 5]


def test_survey_state_dict_resumes_warm_with_its_densities(pinn):
    first = CurvatureSurvey(every=1, terms=["pde"], density=DensityGrid(every=1, probes=1, steps=4, points=11))
    first.measure(0, loss_fn=pinn.loss_fn, terms_fn=pinn.terms_fn, params=pinn.params)
    second = CurvatureSurvey(every=1, terms=["pde"], density=DensityGrid(every=1, probes=1, steps=4, points=11))
    second.load_state_dict(first.state_dict())
    assert second.spectrum()["density"].shape == (1, 11)
    assert second._trackers["pde"]._eigenvectors is not None

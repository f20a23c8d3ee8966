"""The PDE residual operators: exact solutions make every residual vanish and perturbed ones
do not, the autograd derivatives agree with finite differences, the residual can be
differentiated twice w.r.t. a network's parameters, and the loss options compose."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from neuroscope import ConfigError, compose, pde
from neuroscope.targets import resolve_target
from neuroscope.typed import to_config
from neuroscope.losses import build_pde

DT = torch.float64

# (problem, box) as the loss presets use them
PROBLEMS = {
    "poisson1d": (pde.Poisson1D(frequency=math.pi), (-1.0, 1.0)),
    "poisson2d": (pde.Poisson2D(frequency=1.0), (-1.0, 1.0)),
    "poisson2d_product": (pde.Poisson2D(frequency=1.0, solution="sin_product"), (0.0, math.pi)),
    "heat": (pde.Heat(alpha=0.1), (0.0, 1.0)),
    "burgers": (pde.Burgers(), (0.0, 1.0)),
    "helmholtz": (pde.Helmholtz(frequency=1.0, wavenumber=1.5), (-1.0, 1.0)),
}


def points(problem, box, n=400, seed=0, sampling="uniform"):
    gen = torch.Generator().manual_seed(seed)
    return (
        problem.collocation_points(*box, n, gen, DT, sampling=sampling),
        problem.boundary_points(*box, 64, gen, DT, sampling=sampling),
    )


def perturbation(x):
    return 0.1 * torch.sin(3 * x[:, 0])


# A user-written PDE, as CustomPDE takes it: the heat equation u_t = alpha u_xx.
def heat_residual(x, u, alpha):
    return pde.derivative(u, x, dim=1) - alpha * pde.derivative(u, x, dim=0, order=2)


# ------------------------------------------------------------------ residuals ---------


@pytest.mark.parametrize("name", PROBLEMS)
def test_exact_solution_makes_interior_and_boundary_residuals_vanish(name):
    problem, box = PROBLEMS[name]
    x, xb = points(problem, box)
    assert problem.residual(problem.solution, x).abs().max().item() <= 1e-8
    assert problem.boundary_residual(problem.solution, xb).abs().max().item() <= 1e-8


# Linear problems: residual(u* + p) = L[p] for p = 0.1 sin(3x), known in closed form.
LINEAR_RESIDUAL_OF_PERTURBATION = {
    "poisson1d": lambda x: -0.9 * torch.sin(3 * x[:, 0]),
    "poisson2d": lambda x: -0.9 * torch.sin(3 * x[:, 0]),
    "heat": lambda x: 0.1 * 0.9 * torch.sin(3 * x[:, 0]),
    "helmholtz": lambda x: (-0.9 + 0.1 * 1.5**2) * torch.sin(3 * x[:, 0]),
}


@pytest.mark.parametrize("name", LINEAR_RESIDUAL_OF_PERTURBATION)
def test_residual_of_perturbed_solution_is_the_operator_applied_to_the_perturbation(name):
    problem, box = PROBLEMS[name]
    x, _ = points(problem, box)
    r = problem.residual(lambda z: problem.solution(z) + perturbation(z), x)
    expected = LINEAR_RESIDUAL_OF_PERTURBATION[name](x)
    assert torch.allclose(r, expected, atol=1e-9)
    assert r.abs().max().item() >= 0.05  # clearly not a solution


@pytest.mark.parametrize("name", PROBLEMS)
def test_perturbed_solution_leaves_a_clear_residual(name):
    problem, box = PROBLEMS[name]
    x, xb = points(problem, box)
    perturbed = lambda z: problem.solution(z) + perturbation(z)  # noqa: E731
    assert problem.residual(perturbed, x).abs().max().item() >= 0.05
    assert problem.boundary_residual(perturbed, xb).abs().max().item() >= 0.01


def test_helmholtz_residual_includes_the_wavenumber_term():
    # u = u* + c makes Δu + κ²u - f = κ² c: the κ²u term is there with the right sign.
    problem = pde.Helmholtz(frequency=1.0, wavenumber=2.0)
    x, _ = points(problem, (-1.0, 1.0))
    r = problem.residual(lambda z: problem.solution(z) + 0.5, x)
    assert torch.allclose(r, torch.full_like(r, 4.0 * 0.5), atol=1e-9)


@pytest.mark.parametrize("solution, eigenvalue", [("sin_sum", -4.0), ("sin_product", -8.0)])
def test_poisson_source_is_the_laplacian_of_the_exact_solution(solution, eigenvalue):
    problem = pde.Poisson2D(frequency=2.0, solution=solution)
    x, _ = points(problem, (-1.0, 1.0))
    assert problem.eigenvalue == eigenvalue
    xg = x.clone().requires_grad_(True)
    assert torch.allclose(problem.source(x), pde.laplacian(problem.solution(xg), xg).detach(), atol=1e-10)


def test_unknown_exact_solution_is_a_config_error():
    with pytest.raises(ConfigError, match="function=sin_sum or function=sin_product"):
        pde.Poisson2D(solution="sin")


def test_burgers_residual_sees_the_nonlinear_term():
    # For u = u* + c (a Galilean shift), u_t + u u_x - nu u_xx = c u*_x, nonzero across the front.
    problem = pde.Burgers()
    x, _ = points(problem, (0.0, 1.0))
    xg = x.clone().requires_grad_(True)
    ux = pde.derivative(problem.solution(xg), xg, dim=0).detach()
    r = problem.residual(lambda z: problem.solution(z) + 0.2, x)
    assert torch.allclose(r, 0.2 * ux, atol=1e-9)
    assert r.abs().max().item() > 0.1


# ------------------------------------------------------------- boundary conditions ------


@pytest.mark.parametrize("boundary", ["dirichlet", "neumann", "periodic"])
def test_boundary_kinds_vanish_on_the_exact_solution_and_not_on_a_perturbed_one(boundary):
    # sin(πx) sin(πy) on [-1, 1]^2 is zero on the boundary, periodic, with nonzero normal derivative.
    problem = pde.Helmholtz(frequency=math.pi, wavenumber=2.0, solution="sin_product", boundary=boundary)
    _, xb = points(problem, (-1.0, 1.0))
    assert problem.boundary_residual(problem.solution, xb).abs().max().item() <= 1e-10
    # 0.1 sin(3x): nonzero on x = ±1 (Dirichlet), odd so not periodic, slope 0.3 cos(3) (Neumann)
    r = problem.boundary_residual(lambda z: problem.solution(z) + perturbation(z), xb)
    assert r.shape == (len(xb),)
    assert r.abs().max().item() >= 0.01


def test_neumann_residual_is_the_outward_normal_derivative_mismatch():
    problem = pde.Poisson1D(boundary="neumann")
    xb = problem.boundary_points(0.0, 2.0, 2, torch.Generator(), DT)
    r = problem.boundary_residual(lambda z: problem.solution(z) + 0.5 * z[:, 0] ** 2, xb)
    # d/dx (0.5 x^2) = x; outward normal -1 at x = 0 and +1 at x = 2
    assert r.tolist() == pytest.approx([0.0, 2.0], abs=1e-12)


def test_periodic_residual_compares_opposite_faces():
    problem = pde.Helmholtz(boundary="periodic")
    xb = problem.boundary_points(0.0, 1.0, 40, torch.Generator().manual_seed(1), DT)
    r = problem.boundary_residual(lambda z: z[:, 0] + 2 * z[:, 1], xb)
    # u(lo face) - u(hi face) across x is -1, across y is -2; the hi faces give +1, +2
    assert sorted(set(round(v, 12) for v in r.tolist())) == [-2.0, -1.0, 1.0, 2.0]


def test_time_dependent_boundary_is_spatial_faces_and_initial_face_only():
    problem = pde.Heat()
    xb = problem.boundary_points(0.0, 1.0, 60, torch.Generator().manual_seed(0), DT)
    on_x_face = (xb[:, 0] == 0.0) | (xb[:, 0] == 1.0)
    initial = xb[:, 1] == 0.0
    assert bool((on_x_face | initial).all())
    assert int(initial.sum()) == 20 and int(on_x_face.sum()) == 40
    assert not bool((xb[:, 1] == 1.0).any())  # no condition at the final time
    # a function right at t = 0 but wrong later is accepted by the initial condition
    late = lambda z: problem.solution(z) + z[:, 1] * 0.3  # noqa: E731
    r = problem.boundary_residual(late, xb)
    assert r[initial].abs().max().item() <= 1e-12
    assert r[on_x_face].abs().max().item() >= 0.1


def test_collocation_points_fill_the_box_and_are_reproducible():
    problem = pde.Poisson2D()
    x1 = problem.collocation_points(-1.0, 2.0, 300, torch.Generator().manual_seed(3), torch.float32, sampling="uniform")
    x2 = problem.collocation_points(-1.0, 2.0, 300, torch.Generator().manual_seed(3), torch.float32, sampling="uniform")
    assert x1.shape == (300, 2) and x1.dtype == torch.float32 and torch.equal(x1, x2)
    assert x1.min().item() >= -1.0 and x1.max().item() <= 2.0
    assert (x1[:, 0] < 0.5).float().mean().item() == pytest.approx(0.5, abs=0.1)
    grid = problem.collocation_points(-1.0, 2.0, 100, torch.Generator(), DT)  # the default: cell centres
    assert grid.shape == (100, 2) and torch.unique(grid[:, 0]).tolist() == pytest.approx([-0.85 + 0.3 * i for i in range(10)])
    xb = problem.boundary_points(-1.0, 2.0, 40, torch.Generator(), DT)
    assert xb.shape == (40, 2) and bool(((xb == -1.0) | (xb == 2.0)).any(dim=1).all())
    xb1 = pde.Poisson1D().boundary_points(-1.0, 2.0, 64, torch.Generator(), DT)
    assert xb1[:, 0].tolist() == [-1.0, 2.0]


# ------------------------------------------------------------------- derivatives -------


def smooth(x):
    return torch.exp(torch.sin(x[:, 0]) * x[:, 1]) + x[:, 0] ** 3 * x[:, 1] - torch.cos(2 * x[:, 1])


def test_autograd_laplacian_matches_central_differences():
    x = torch.rand(50, 2, generator=torch.Generator().manual_seed(0), dtype=DT) * 2 - 1
    xg = x.clone().requires_grad_(True)
    lap = pde.laplacian(smooth(xg), xg).detach()
    h = 1e-4
    fd = torch.zeros(len(x), dtype=DT)
    for j in range(2):
        e = torch.zeros(2, dtype=DT)
        e[j] = h
        fd += (smooth(x + e) - 2 * smooth(x) + smooth(x - e)) / h**2
    assert torch.allclose(lap, fd, atol=1e-5)
    assert lap.abs().max().item() > 1.0  # a non-trivial function


def test_gradient_and_derivative_match_closed_forms():
    x = torch.linspace(-2, 2, 41, dtype=DT).reshape(-1, 1).repeat(1, 2).requires_grad_(True)
    u = torch.sin(x[:, 0]) * torch.exp(x[:, 1])
    g = pde.gradient(u, x)
    assert torch.allclose(g[:, 0], torch.cos(x[:, 0]) * torch.exp(x[:, 1]), atol=1e-12)
    assert torch.allclose(g[:, 1], u, atol=1e-12)
    assert torch.allclose(pde.derivative(u, x, dim=0, order=3), -torch.cos(x[:, 0]) * torch.exp(x[:, 1]), atol=1e-12)
    mixed = pde.derivative(pde.derivative(u, x, 0), x, 1)
    assert torch.allclose(mixed, torch.cos(x[:, 0]) * torch.exp(x[:, 1]), atol=1e-12)
    assert torch.allclose(pde.laplacian(u, x, dims=[1]), u, atol=1e-12)
    # derivatives of something that does not depend on x are zero, not an error
    assert torch.equal(pde.derivative(3.0 * x[:, 0], x, dim=0, order=2), torch.zeros(41, dtype=DT))


# ------------------------------------------- differentiating through the residual -------


def tiny_net(input_dim, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(input_dim, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 1)).to(DT)


def pinn_objective(problem, box, net, params_list):
    from torch.func import functional_call

    names = [n for n, _ in net.named_parameters()]
    x, xb = points(problem, box, n=64)

    def u(z):
        return functional_call(net, dict(zip(names, params_list)), (z,)).squeeze(-1)

    return problem.residual(u, x).pow(2).mean() + problem.boundary_residual(u, xb).pow(2).mean()


@pytest.mark.parametrize("name", ["poisson1d", "poisson2d", "heat", "burgers"])
def test_hessian_vector_product_through_the_residual_matches_finite_differences(name):
    problem, box = PROBLEMS[name]
    net = tiny_net(problem.input_dim)
    theta = [p.detach().clone().requires_grad_(True) for p in net.parameters()]
    v = [torch.randn_like(p) for p in theta]
    loss = pinn_objective(problem, box, net, theta)
    grads = torch.autograd.grad(loss, theta, create_graph=True)
    assert all(g.requires_grad for g in grads)  # the residual is differentiable in the parameters
    hv = torch.autograd.grad(sum((g * w).sum() for g, w in zip(grads, v)), theta)
    hv = torch.cat([h.reshape(-1) for h in hv])

    def flat_grad(shift):
        shifted = [(p + shift * w).detach().requires_grad_(True) for p, w in zip(theta, v)]
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(pinn_objective(problem, box, net, shifted), shifted)])

    eps = 1e-5
    fd = (flat_grad(eps) - flat_grad(-eps)) / (2 * eps)
    assert torch.isfinite(hv).all()
    assert hv.norm().item() > 1e-3
    assert torch.allclose(hv, fd, rtol=1e-5, atol=1e-6 * fd.norm().item())


def test_dense_hessian_from_double_backward_is_symmetric():
    problem, box = PROBLEMS["poisson1d"]
    net = tiny_net(1)
    theta = [p.detach().clone().requires_grad_(True) for p in net.parameters()]
    grads = torch.autograd.grad(pinn_objective(problem, box, net, theta), theta, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])
    rows = [torch.cat([h.reshape(-1) for h in torch.autograd.grad(flat[i], theta, retain_graph=True)]) for i in range(len(flat))]
    hess = torch.stack(rows)
    assert torch.allclose(hess, hess.T, atol=1e-8 * hess.abs().max().item())


# ------------------------------------------------------------------- CustomPDE ---------


def test_custom_pde_from_dotted_paths_equals_the_built_in_heat_equation():
    custom = pde.CustomPDE(
        residual="tests.test_pde.heat_residual", solution="neuroscope.pde.heat_decay", input_dim=2, time_dim=1,
        coefficients={"alpha": 0.1}, solution_params={"alpha": 0.1},
    )
    heat, box = PROBLEMS["heat"]
    x, xb = points(heat, box)
    assert custom.residual(custom.solution, x).abs().max().item() <= 1e-8
    assert custom.boundary_residual(custom.solution, xb).abs().max().item() <= 1e-8
    net = tiny_net(2)
    u = lambda z: net(z).squeeze(-1)  # noqa: E731
    assert torch.allclose(custom.residual(u, x), heat.residual(u, x), atol=1e-12)
    assert torch.allclose(custom.boundary_residual(u, xb), heat.boundary_residual(u, xb), atol=1e-12)


def test_custom_pde_bad_arguments_fail_with_a_message():
    with pytest.raises(ConfigError, match="loss.pde.params.residual"):
        pde.CustomPDE(residual="tests.test_pde.no_such_function", solution="neuroscope.pde.heat_decay")
    with pytest.raises(ConfigError, match="needs loss.pde.params.solution"):
        pde.CustomPDE(residual=heat_residual)
    with pytest.raises(ConfigError, match="boundary='robin'"):
        pde.CustomPDE(residual=heat_residual, solution=pde.heat_decay, boundary="robin")


CUSTOM_LOSS_YAML = """\
# @package _global_
defaults:
  - /loss_schema@loss
  - override /function: custom
  - _self_
input_dim: 2
data: {train_range: [0.0, 1.0], test_range: [-0.25, 1.25]}
function:
  _target_: neuroscope.pde.heat_decay
  input_dims: [2]
  params: {alpha: 0.2, frequency: 1.0}
loss:
  name: my_heat
  data_weight: 0.0
  pde:
    _target_: neuroscope.pde.CustomPDE
    params:
      residual: tests.test_pde.heat_residual
      solution: ${function._target_}
      solution_params: ${function.params}
      input_dim: ${input_dim}
      time_dim: 1
      coefficients: {alpha: "${function.params.alpha}"}
"""


def test_custom_pde_loss_option_from_a_user_config_dir_builds_through_target(tmp_path):
    (tmp_path / "loss").mkdir()
    (tmp_path / "loss" / "my_heat.yaml").write_text(CUSTOM_LOSS_YAML)
    cfg = compose([f"hydra.searchpath=[file://{tmp_path}]", "loss=my_heat"])
    problem = build_pde(to_config(cfg).loss, to_config(cfg).input_dim)
    assert isinstance(problem, pde.CustomPDE) and problem.coefficients == {"alpha": 0.2}
    x, xb = points(problem, (0.0, 1.0))
    assert problem.residual(problem.solution, x).abs().max().item() <= 1e-8
    assert problem.boundary_residual(problem.solution, xb).abs().max().item() <= 1e-8
    wrong_alpha = pde.Heat(alpha=0.1)
    assert problem.residual(wrong_alpha.solution, x).abs().max().item() > 0.05


# ------------------------------------------------------------------- configs -----------

PRESETS = {
    # loss option: (function option, input_dim, PDE class, train_range)
    "poisson1d": ("sin_sum", 1, pde.Poisson1D, [-1.0, 1.0]),
    "poisson2d": ("sin_sum", 2, pde.Poisson2D, [-1.0, 1.0]),
    "heat": ("heat_decay", 2, pde.Heat, [0.0, 1.0]),
    "burgers": ("burgers_front", 2, pde.Burgers, [0.0, 1.0]),
    "helmholtz": ("sin_sum", 2, pde.Helmholtz, [-1.0, 1.0]),
}


@pytest.mark.parametrize("loss", PRESETS)
def test_pde_loss_option_composes_with_its_exact_solution(loss):
    function, input_dim, cls, train_range = PRESETS[loss]
    config = to_config(compose([f"loss={loss}"]))
    assert config.function.name == function and config.input_dim == input_dim
    assert list(config.data.train_range) == train_range
    assert config.loss.data_weight == 0.0 and config.loss.name == loss
    problem = build_pde(config.loss, config.input_dim)
    assert type(problem) is cls and problem.input_dim == input_dim
    # the `function` option is the PDE's exact solution: test_error measures the PDE's error
    target = resolve_target(config.function._target_, key="function._target_")
    x, _ = points(problem, tuple(train_range))
    assert torch.allclose(target(x, **config.function.params), problem.solution(x), atol=1e-12)


def test_shared_parameters_are_set_in_one_place():
    config = to_config(compose(["loss=heat", "function.params.alpha=0.3", "function.params.frequency=2"]))
    problem = build_pde(config.loss, config.input_dim)
    assert (problem.alpha, problem.frequency) == (0.3, 2.0)
    config = to_config(compose(["loss=poisson2d", "function.params.frequency=2"]))
    assert build_pde(config.loss, config.input_dim).frequency == 2.0
    # choosing the other exact solution switches the equation's source with it
    config = to_config(compose(["loss=poisson2d", "function=sin_product"]))
    problem = build_pde(config.loss, config.input_dim)
    assert problem.solution_name == "sin_product" and problem.eigenvalue == -2.0


def test_command_line_overrides_still_win_over_a_pde_loss_option():
    cfg = compose(["loss=poisson1d", "function=sin", "lr=0.5", "steps=7", "loss.data_weight=1", "data.train_range=[-1.2,1.2]"])
    assert cfg.function.name == "sin" and cfg.lr == 0.5 and cfg.steps == 7
    assert cfg.loss.data_weight == 1.0 and list(cfg.data.train_range) == [-1.2, 1.2]
    assert cfg.loss.pde._target_ == "neuroscope.pde.Poisson1D"
    # ... and a function the Poisson problem has no exact source for is refused, saying why
    with pytest.raises(ConfigError, match="loss.pde.params.solution='sin'"):
        build_pde(to_config(cfg).loss, to_config(cfg).input_dim)


def test_plain_losses_have_no_pde():
    assert compose(["loss=mse"]).loss.pde is None


def test_typo_in_a_pde_loss_setting_fails_at_compose():
    with pytest.raises(ConfigError, match="pde_weight"):
        compose(["loss=poisson1d", "loss.pde_weigth=1"])
    with pytest.raises(ConfigError):
        compose(["loss=poisson2d", "loss.bc_weight=heavy"])

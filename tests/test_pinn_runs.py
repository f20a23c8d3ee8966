"""Physics-informed runs end to end: the pure-physics Poisson presets learn their exact
solution to 1% relative L2 within 2000 plain GD steps, the sharpness tracker sees the PDE
terms of the objective, and a user's own PDE runs from a config directory."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from neuroscope import compose, train
from neuroscope import data as data_mod
from neuroscope.config import ConfigError
from neuroscope.targets import resolve_target
from neuroscope.typed import to_config
from neuroscope.losses import build_pde

from .test_pde import CUSTOM_LOSS_YAML

QUIET = ["viz.format=none", "progress=false"]


def relative_l2(cfg, model) -> float:
    """||net - u*|| / ||u*|| on a fine grid of the training box, in float64."""
    lo, hi = cfg.data.train_range
    side = torch.linspace(lo, hi, 101, dtype=torch.float64)
    x = side[:, None] if cfg.input_dim == 1 else torch.cartesian_prod(side, side)
    exact = resolve_target(cfg.function._target_, key="function._target_")(x, **cfg.function.params)
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        pred = model(x.to(dtype)).to(torch.float64)
    return ((pred - exact).norm() / exact.norm()).item()


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["poisson1d", "poisson2d"])
def test_pure_physics_poisson_reaches_one_percent_relative_l2_within_2000_steps(loss, tmp_path):
    # The preset as a user runs it (sharpness tracking off only to save time: it does not
    # change the GD trajectory).
    cfg = compose([f"loss={loss}", "curvature.every=0", *QUIET])
    assert cfg.steps <= 2000 and cfg.loss.data_weight == 0.0
    result = train(cfg, out_dir=tmp_path)
    assert result.status == "finished"
    metrics = result.history.metrics
    assert "loss_data" not in metrics and {"loss_pde", "loss_bc"} <= set(metrics)
    assert metrics["loss"][-1] < 1e-2 * metrics["loss"][0]
    assert relative_l2(cfg, result.model) <= 1e-2
    # test_error (MSE on the in-box test grid) says the same against the exact solution
    config = to_config(cfg)
    problem = data_mod.make(config, lambda x: torch.zeros(len(x), dtype=x.dtype), device=torch.device("cpu"), dtype=torch.float64)
    exact = resolve_target(cfg.function._target_, key="function._target_")(problem.test_x, **cfg.function.params)
    assert math.sqrt(metrics["test_error"][-1] / exact.pow(2).mean().item()) <= 1e-2


@pytest.mark.parametrize("loss", ["heat", "burgers", "helmholtz"])
def test_other_pde_presets_train(loss, tmp_path):
    cfg = compose([f"loss={loss}", "steps=100", "curvature.every=50", *QUIET])
    result = train(cfg, out_dir=tmp_path)
    metrics = result.history.metrics
    assert result.status == "finished"
    assert np.isfinite(metrics["loss_pde"]).all() and np.isfinite(metrics["loss_bc"]).all()
    assert metrics["loss"][-1] < 0.7 * metrics["loss"][0]
    assert metrics["test_error"][-1] < 0.5 * metrics["test_error"][0]  # towards the exact solution
    assert np.isfinite(metrics["sharpness"][~np.isnan(metrics["sharpness"])]).all()


def test_sharpness_of_a_physics_informed_objective_is_the_top_eigenvalue_of_its_hessian(tmp_path):
    cfg = compose(
        ["loss=poisson2d", "steps=3", "model.width=4", "curvature.every=1", "curvature.method=exact", "device.dtype=float64",
         "loss.n_collocation=64", "loss.n_boundary=16", "loss.l2_weight=0.001", *QUIET]
    )
    result = train(cfg, out_dir=tmp_path)
    config = to_config(cfg)
    pde = build_pde(config.loss, config.input_dim)
    target = resolve_target(config.function._target_, key="function._target_")
    problem = data_mod.make(config, lambda x: target(x, **config.function.params), pde=pde, device=torch.device("cpu"), dtype=torch.float64)
    model = result.model
    names = [n for n, _ in model.named_parameters()]
    theta = [p.detach().clone().requires_grad_(True) for p in model.parameters()]

    def objective(params):
        def net(z):
            return functional_call(model, dict(zip(names, params)), (z,))

        return (
            config.loss.pde_weight * pde.residual(net, problem.collocation_x).pow(2).mean()
            + config.loss.bc_weight * pde.boundary_residual(net, problem.boundary_x).pow(2).mean()
            + config.loss.l2_weight * sum((p * p).sum() for p in params)
        )

    loss = objective(theta)
    assert loss.item() == pytest.approx(result.history.metrics["loss"][-1], rel=1e-10)
    grads = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, theta, create_graph=True)])
    hessian = torch.stack(
        [torch.cat([h.reshape(-1) for h in torch.autograd.grad(g, theta, retain_graph=True)]) for g in grads]
    )
    top = torch.linalg.eigvalsh((hessian + hessian.T) / 2)[-1].item()
    assert result.history.metrics["sharpness"][-1] == pytest.approx(top, rel=1e-8)


def test_users_own_pde_runs_from_their_config_dir(tmp_path):
    conf = tmp_path / "myconf"
    (conf / "loss").mkdir(parents=True)
    (conf / "loss" / "my_heat.yaml").write_text(CUSTOM_LOSS_YAML)
    cfg = compose([f"hydra.searchpath=[file://{conf}]", "loss=my_heat", "steps=600", "lr=0.08", "curvature.every=0", *QUIET])
    result = train(cfg, out_dir=tmp_path / "run")
    metrics = result.history.metrics
    assert result.status == "finished"
    assert metrics["loss"][-1] < 0.5 * metrics["loss"][0]
    assert metrics["test_error"][-1] < 0.3 * metrics["test_error"][0]  # towards the user's exact solution


def test_pure_pde_term_without_boundary_trains(tmp_path):
    # u''=f alone does not depend on the last bias: its gradient must be zero, not a crash
    result = train(compose(["loss=poisson1d", "loss.bc_weight=0", "steps=20", "curvature.every=5", "viz.format=none"]), out_dir=tmp_path)
    assert result.status == "finished" and result.history.metrics["loss_pde"][-1] < result.history.metrics["loss_pde"][0]


def test_pde_in_the_wrong_input_dim_is_a_clear_error():
    with pytest.raises(ConfigError, match="loss=poisson2d is a PDE in 2 input dimension"):
        build_pde(to_config(compose(["loss=poisson2d", "input_dim=1"])).loss, 1)

"""The update rules: each one's edge of stability on a quadratic, the rules against torch.optim's
iterates, momentum runs that resume exactly, and heavy ball settling at (2 + 2β)/lr."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from neuroscope import ConfigError, compose, resume, train
from neuroscope.config import OptimizerConfig
from neuroscope.typed import to_config
from neuroscope.curvature import SharpnessTracker
from neuroscope.optimizers import GradientDescent, HeavyBall, Nesterov, build_rule
from neuroscope.rundir import MetricsWriter, read_metrics_csv
from neuroscope.run import build
from neuroscope.sweep.jobs import _edge
from neuroscope.trainer import Trainer, TrainSettings, TrainState, metric_columns

from .conftest import fast_config

RULES = [GradientDescent(), HeavyBall(0.5), HeavyBall(0.9), Nesterov(0.5), Nesterov(0.9)]


def _iterate(rule, curvature: float, lr: float, steps: int) -> float:
    """|θ| after ``steps`` updates of ``rule`` on L = ½·curvature·θ², from θ = 1 (or once past 1e6)."""
    theta = torch.ones(1, dtype=torch.float64)
    for _ in range(steps):
        grad = curvature * theta
        momentum = rule.step(grad, lr)
        theta = theta - lr * grad + (momentum if momentum is not None else 0.0)
        if theta.abs() > 1e6:
            break
    return float(theta.abs())


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.label)
def test_each_rule_is_stable_below_its_edge_and_diverges_above_it(rule):
    lr = 0.1
    edge = rule.edge(lr)
    below, above = type(rule)(rule.momentum), type(rule)(rule.momentum)
    assert _iterate(below, 0.97 * edge, lr, 3000) < 1e-3
    assert _iterate(above, 1.03 * edge, lr, 3000) > 1e3


def test_edges_are_the_formulas_of_cohen_et_al():
    lr, b = 0.1, 0.5
    assert GradientDescent().edge(lr) == pytest.approx(20.0)
    assert HeavyBall(b).edge(lr) == pytest.approx(30.0)
    assert Nesterov(b).edge(lr) == pytest.approx((2 + 2 * b) / (lr * (1 + 2 * b)))
    assert [r.edge_label for r in RULES[::2]] == ["2/lr", "(2+2β)/lr", "(2+2β)/(lr(1+2β))"]


@pytest.mark.parametrize("name, nesterov", [("heavy_ball", False), ("nesterov", True)])
def test_momentum_rules_take_the_iterates_of_torch_sgd(name, nesterov):
    """torch.optim.SGD as the independent oracle: its heavy ball is ours with v = −lr·buf."""
    torch.manual_seed(0)
    a = torch.randn(6, 6, dtype=torch.float64)
    hessian, theta0 = a @ a.T / 6 + torch.eye(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    lr, beta = 0.05, 0.8
    rule = build_rule(OptimizerConfig(_target_=f"neuroscope.optimizers.{'Nesterov' if nesterov else 'HeavyBall'}", name=name,
                                      momentum=beta))
    ours = theta0.clone()
    ref = theta0.clone().requires_grad_(True)
    sgd = torch.optim.SGD([ref], lr=lr, momentum=beta, nesterov=nesterov)
    for _ in range(50):
        grad = hessian @ ours
        ours = ours - lr * grad + rule.step(grad, lr)
        sgd.zero_grad()
        (0.5 * ref @ hessian @ ref).backward()
        sgd.step()
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-12, atol=1e-12)


def test_heavy_ball_without_momentum_writes_the_metrics_of_gradient_descent(tmp_path):
    train(fast_config("curvature.every=3"), out_dir=tmp_path / "gd")
    train(fast_config("curvature.every=3", "optimizer=heavy_ball", "optimizer.momentum=0"), out_dir=tmp_path / "hb")
    assert (tmp_path / "gd" / "metrics.csv").read_bytes() == (tmp_path / "hb" / "metrics.csv").read_bytes()


def test_gd_with_a_momentum_and_a_momentum_of_one_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="optimizer=gd with optimizer.momentum=0.5"):
        train(fast_config("optimizer.momentum=0.5"), out_dir=tmp_path / "a")
    with pytest.raises(ConfigError, match=r"optimizer.momentum=1.0 is not allowed"):
        train(fast_config("optimizer=heavy_ball", "optimizer.momentum=1.0"), out_dir=tmp_path / "b")


def test_projection_is_the_step_actually_taken_with_momentum(tmp_path):
    """|Δθ·v_max| against θ_{t+1} − θ_t kept by the checkpoint hook and v_max of the dense Hessian."""
    setup = build(to_config(fast_config("device.dtype=float64", "model.width=4")))
    columns = metric_columns(setup.objective.term_names, 1)
    thetas = [_flat(setup.model)]
    trainer = Trainer(
        model=setup.model, problem=setup.problem, objective=setup.objective,
        writer=MetricsWriter(tmp_path / "metrics.csv", columns), settings=TrainSettings(lr=0.1, steps=8, curvature_every=1, checkpoint_every=1),
        tracker=SharpnessTracker(method="exact"), on_checkpoint=lambda state: thetas.append(_flat(setup.model)), progress=False,
        rule=HeavyBall(0.9),
    )
    loss_at = trainer.loss_fn
    _, state = trainer.run(TrainState(), geometry=None)
    projection = np.asarray(state.metrics["projection"])
    along_grad = []
    for t in range(8):
        h = torch.autograd.functional.hessian(lambda flat: loss_at(_split(flat, setup.model)), thetas[t])
        v = torch.linalg.eigh(h).eigenvectors[:, -1]
        step = thetas[t + 1] - thetas[t]
        assert projection[t] == pytest.approx(abs(float(step @ v)), rel=1e-8)
        grad = torch.autograd.functional.jacobian(lambda flat: loss_at(_split(flat, setup.model)), thetas[t])
        along_grad.append(0.1 * abs(float(grad @ v)))
    assert np.max(np.abs(projection[:8] - along_grad) / projection[:8]) > 0.1  # momentum moved it off −lr·∇L


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()


def _split(flat: torch.Tensor, model) -> list[torch.Tensor]:
    sizes = [p.numel() for p in model.parameters()]
    return [chunk.view(p.shape) for chunk, p in zip(flat.split(sizes), model.parameters())]


@pytest.mark.parametrize("optimizer", ["heavy_ball", "nesterov"])
def test_resume_of_a_momentum_run_equals_the_uninterrupted_run(tmp_path, optimizer):
    # curvature off step 20: a finished run re-measures its last row warm, in fewer products
    args = [f"optimizer={optimizer}", "optimizer.momentum=0.7", "curvature.every=3"]
    full = train(fast_config(*args, "steps=40"), out_dir=tmp_path / "full")
    train(fast_config(*args, "steps=20"), out_dir=tmp_path / "first")
    continued = resume(str(tmp_path / "first"), ["steps=40"], out_dir=str(tmp_path / "continued"))
    assert continued.status == "finished"
    assert (tmp_path / "continued" / "metrics.csv").read_bytes() == (tmp_path / "full" / "metrics.csv").read_bytes()
    assert full.summary["edge"] == pytest.approx(HeavyBall(0.7).edge(0.1) if optimizer == "heavy_ball" else Nesterov(0.7).edge(0.1))


def test_a_sweep_job_without_summary_takes_its_edge_from_its_config():
    config = OmegaConf.create({"optimizer": {"_target_": "neuroscope.optimizers.HeavyBall", "name": "heavy_ball", "momentum": 0.5}})
    assert _edge({}, config, 0.1) == pytest.approx(30.0)
    assert _edge({}, None, 0.1) == pytest.approx(20.0)
    assert _edge({"edge": 12.5}, config, 0.1) == 12.5


@pytest.mark.slow
def test_heavy_ball_sharpness_hovers_at_two_plus_two_beta_over_lr(tmp_path):
    result = train(compose(["optimizer=heavy_ball", "optimizer.momentum=0.5", "lr=0.1", "steps=1500", "seed=0",
                            "viz.format=none"]), out_dir=tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["edge"] == pytest.approx(30.0) and summary["edge_label"] == "(2+2β)/lr"
    m = read_metrics_csv(tmp_path / "metrics.csv")
    measured = np.isfinite(m["sharpness"])
    step, sharp = m["step"][measured], m["sharpness"][measured]
    late = sharp[step >= 0.8 * 1500]
    assert abs(late.mean() / 30.0 - 1) <= 0.10, late.mean()
    assert result.summary["late_sharpness_over_edge"] == pytest.approx(late.mean() / 30.0)
    assert sharp.max() < 1.3 * 30.0  # it does not run on past its edge like gradient flow would

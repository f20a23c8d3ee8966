"""The runner end to end: one GD step against an independent computation, the exact
sharpness against torch.func.hessian, the CLI in 1D, 2D, as a sweep and diverging."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from torch.func import functional_call, hessian

from neuroscope import train
from neuroscope.typed import to_config
from neuroscope.run import build_model, seed_everything
from neuroscope.rundir import read_metrics_csv

from .conftest import fast_config, run_cli, single_run_dir

RUN_FILES = ["metrics.csv", "history.npz", "summary.json", "model.pt", "dashboard.png", ".hydra/config.yaml"]


def test_one_gd_step_equals_theta_minus_lr_grad(tmp_path):
    cfg = fast_config("steps=1", "lr=0.05", "curvature.every=0", "device.dtype=float64", "loss.l2_weight=0.001")
    result = train(cfg, out_dir=tmp_path)
    # Independently: the same initial net, the loss written out, autograd for the gradient.
    config = to_config(cfg)
    seed_everything(config.seed)
    net = build_model(config.model, 1).to(torch.float64)
    x = torch.linspace(-math.pi, math.pi, config.data.n_train, dtype=torch.float64)[:, None]
    loss = ((net(x) - torch.sin(x[:, 0])) ** 2).mean() + 0.001 * sum((p**2).sum() for p in net.parameters())
    grads = torch.autograd.grad(loss, list(net.parameters()))
    for (name, trained), p0, g in zip(result.model.named_parameters(), net.parameters(), grads):
        assert torch.allclose(trained.detach(), p0.detach() - 0.05 * g, atol=1e-12), name
    assert result.history.metrics["loss"][0] == pytest.approx(loss.item(), rel=1e-12)


def test_exact_sharpness_equals_top_eigenvalue_of_torch_func_hessian(tmp_path):
    cfg = fast_config("steps=3", "curvature.every=1", "curvature.method=exact", "device.dtype=float64", "model.width=6", "loss.l2_weight=0.01")
    result = train(cfg, out_dir=tmp_path)
    final = result.model
    params = {k: v.detach() for k, v in final.named_parameters()}
    x = torch.linspace(-math.pi, math.pi, 64, dtype=torch.float64)[:, None]
    y = torch.sin(x[:, 0])

    def objective(p):
        return ((functional_call(final, p, (x,)) - y) ** 2).mean() + 0.01 * sum((v**2).sum() for v in p.values())

    h = hessian(objective)(params)
    names = list(params)
    n = sum(v.numel() for v in params.values())
    dense = torch.cat([torch.cat([h[a][b].reshape(params[a].numel(), params[b].numel()) for b in names], 1) for a in names], 0)
    assert dense.shape == (n, n)
    top = torch.linalg.eigvalsh(dense)[-1].item()
    sharp = result.history.metrics["sharpness"][-1]  # step 3, the final parameters
    assert sharp == pytest.approx(top, rel=1e-8)


def _check_run_dir(run_dir, input_dim):
    for name in RUN_FILES:
        assert (run_dir / name).exists(), name
    assert (run_dir / "animation.mp4").exists() or (run_dir / "animation.gif").exists()
    assert list(run_dir.glob("*.log")), "job log"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["input_dim"] == input_dim
    with open(run_dir / "metrics.csv") as f:
        header = next(csv.reader(f))
    for column in ["step", "loss", "loss_data", "test_error", "gen_error", "sharpness", "projection"]:
        assert column in header
    m = read_metrics_csv(run_dir / "metrics.csv")
    assert len(m["step"]) == summary["steps"] + 1
    assert np.isfinite(m["sharpness"][::5]).all() and np.isnan(m["sharpness"][1:5]).all()  # curvature.every=5
    assert m["loss"][-1] < m["loss"][0]
    return summary


def test_cli_runs_1d_and_leaves_every_file(tmp_path):
    # a new interpreter, exactly as typed (the other CLI tests run in the fork server's children)
    proc = run_cli(["steps=40", "curvature.every=5", "viz.frames=8", "progress=false"], tmp_path, fresh=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = _check_run_dir(single_run_dir(tmp_path), 1)
    assert summary["final"]["gen_error"] > summary["final"]["test_error"]  # sin outside [-pi, pi] is not learned


@pytest.mark.slow
def test_cli_runs_2d_surface(tmp_path):
    proc = run_cli(["function=sin_cos2d", "input_dim=2", "steps=40", "curvature.every=5", "viz.frames=6", "progress=false"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_run_dir(single_run_dir(tmp_path), 2)


@pytest.mark.slow
def test_cli_multirun_leaves_one_complete_run_per_job(tmp_path):
    proc = run_cli(["-m", "lr=0.01,0.02", "steps=20", "curvature.every=5", "viz.format=none", "progress=false"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = sorted(p.parent for p in (tmp_path / "outputs" / "multirun").glob("*/*/*/summary.json"))
    assert [j.name for j in jobs] == ["0_lr=0.01", "1_lr=0.02"]
    for job, lr in zip(jobs, (0.01, 0.02)):
        summary = json.loads((job / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["lr"] == lr
        assert (job / "metrics.csv").exists() and (job / "model.pt").exists() and (job / "dashboard.png").exists()


@pytest.mark.slow
def test_forced_divergence_exits_zero_with_status_diverged(tmp_path):
    proc = run_cli(["lr=50", "steps=200", "curvature.every=1", "viz.frames=5", "viz.format=none", "progress=false"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = single_run_dir(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert summary["diverged_at_step"] < 200
    m = read_metrics_csv(run_dir / "metrics.csv")
    assert m["step"][-1] == summary["diverged_at_step"]
    assert not np.isfinite(m["loss"][-1]) or m["loss"][-1] > 1e10
    assert (run_dir / "model.pt").exists() and (run_dir / "history.npz").exists() and (run_dir / "dashboard.png").exists()
    assert "diverged" in proc.stdout + proc.stderr

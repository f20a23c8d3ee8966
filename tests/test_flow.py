"""The gradient-flow reference: the integrator against the closed-form flow of a quadratic, GD's
O(lr) distance to the flow, the flow's columns and resume, and GD leaving the flow at the edge
of stability while the flow's sharpness keeps rising (Cohen et al. 2021)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroscope import compose, resume, train
from neuroscope.flow import dormand_prince
from neuroscope.rundir import read_metrics_csv

from .conftest import fast_config


def _quadratic(eigenvalues: list[float], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A symmetric H with the given spectrum and a starting point θ₀."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T, torch.randn(len(eigenvalues), generator=g, dtype=torch.float64)


def _exact_flow(hessian: torch.Tensor, theta0: torch.Tensor, t: float) -> torch.Tensor:
    """exp(−tH)θ₀ of L = ½θᵀHθ, from the eigendecomposition of H."""
    lam, q = torch.linalg.eigh(hessian)
    return q @ (torch.exp(-t * lam) * (q.T @ theta0))


@pytest.mark.parametrize("rtol", [1e-4, 1e-8])
def test_dormand_prince_follows_the_closed_form_flow_of_a_quadratic_to_its_tolerance(rtol):
    hessian, y = _quadratic([0.3, 1.0, 4.0, 12.0, 40.0])  # stiff: 40·lr = 4 is past an explicit step's stability
    lr, h, substeps = 0.1, 0.1, 0
    for step in range(1, 31):
        part = dormand_prince(lambda v: -hessian @ v, y, lr, rtol=rtol, atol=1e-12, h=h)
        y, h, substeps = part.y, part.h, substeps + part.accepted
        exact = _exact_flow(hessian, _quadratic([0.3, 1.0, 4.0, 12.0, 40.0])[1], step * lr)
        assert part.completed
        assert float(torch.linalg.vector_norm(y - exact)) <= 5 * rtol * float(torch.linalg.vector_norm(exact)) + 1e-11
    assert substeps > 30  # the stiff direction forced more than one substep per interval


def test_dormand_prince_gives_up_after_max_steps_and_says_so():
    hessian, y = _quadratic([1.0, 500.0])
    part = dormand_prince(lambda v: -hessian @ v, y, 1.0, rtol=1e-10, atol=1e-14, h=1.0, max_steps=5)
    assert not part.completed and part.accepted < 5 and part.evaluations == 1 + 6 * 5


def _distance_at(lr: float, time: float) -> float:
    steps = round(time / lr)
    result = train(compose(["reference=flow", "device.dtype=float64", "curvature.every=0", f"lr={lr}", f"steps={steps}",
                            "viz.format=none", "viz.frames=2", "progress=false"]))
    return float(np.max(result.history.metrics["distance_to_flow"]))


def test_gd_stays_within_order_lr_of_the_flow_and_the_distance_halves_with_lr(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    far, near = _distance_at(0.02, 3.0), _distance_at(0.01, 3.0)
    assert 0 < near < far < 0.05
    assert 1.7 < far / near < 2.3  # first order in lr


def test_flow_columns_start_at_gd_and_count_their_gradients(tmp_path):
    result = train(fast_config("reference=flow", "curvature.every=5"), out_dir=tmp_path)
    m = result.history.metrics
    assert m["flow_loss"][0] == m["loss"][0] and m["distance_to_flow"][0] == 0.0
    assert m["flow_test_error"][0] == m["test_error"][0] and m["flow_gen_error"][0] == m["gen_error"][0]
    assert m["flow_sharpness"][0] == pytest.approx(m["sharpness"][0], rel=1e-4)
    assert np.isfinite(m["flow_sharpness"][::5]).all() and np.isnan(m["flow_sharpness"][1::5]).all()
    assert m["flow_gradients"][0] == 0 and (m["flow_gradients"][1:] >= 6 * m["flow_substeps"][1:]).all()
    assert (m["flow_substeps"][1:] >= 1).all() and (m["distance_to_flow"][1:] > 0).all()


def test_resume_of_a_run_with_the_flow_equals_the_uninterrupted_run(tmp_path):
    args = ["reference=flow", "optimizer=heavy_ball", "optimizer.momentum=0.5", "curvature.every=3"]
    train(fast_config(*args, "steps=40"), out_dir=tmp_path / "full")
    train(fast_config(*args, "steps=20"), out_dir=tmp_path / "first")
    resume(str(tmp_path / "first"), ["steps=40"], out_dir=str(tmp_path / "continued"))
    assert (tmp_path / "continued" / "metrics.csv").read_bytes() == (tmp_path / "full" / "metrics.csv").read_bytes()


@pytest.mark.slow
def test_gd_tracks_the_flow_below_the_edge_and_leaves_it_at_the_edge(tmp_path):
    """The default problem at lr 0.1 in float64 (eos_vs_flow's problem); the issue's separate
    RK4 script measured the same relations."""
    train(compose(["reference=flow", "device.dtype=float64", "lr=0.1", "steps=1500", "curvature.every=10",
                   "viz.format=none"]), out_dir=tmp_path)
    m = read_metrics_csv(tmp_path / "metrics.csv")
    edge = 2 / 0.1
    measured = np.isfinite(m["sharpness"])
    step, sharp, flow_sharp = m["step"][measured], m["sharpness"][measured], m["flow_sharpness"][measured]
    crossed = step[np.argmax(sharp >= 0.9 * edge)]
    assert 300 < crossed < 500
    before = step < crossed
    assert np.all(np.abs(flow_sharp[before] / sharp[before] - 1) <= 0.01)
    # the losses: within 2% once the first steps' transient (GD ahead of the flow by lr²/2·gᵀHg, ≤ 7%) is over
    rows = (m["step"] >= 10) & (m["step"] < crossed)
    assert np.all(np.abs(m["flow_loss"][rows] / m["loss"][rows] - 1) <= 0.02)
    late = step >= 0.8 * step[-1]
    assert np.all(flow_sharp[late] >= 1.3 * edge)
    assert np.all(np.abs(sharp[late] / edge - 1) <= 0.10)
    assert m["loss"][-1] > 8 * m["flow_loss"][-1]  # the flow ends far lower
    distance = m["distance_to_flow"]
    assert 0 < distance[50] < distance[450] < distance[1500] / 3  # O(lr) drift, then faster after the edge

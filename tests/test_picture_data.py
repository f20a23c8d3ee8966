"""What a run hands the pictures: the PDE's points (subsampled), its axis names, and the error
bound of the projection (``projection_err``), checked against a dense eigendecomposition."""
from __future__ import annotations

import math

import numpy as np
import pytest

from neuroscope import rundir as hist
from neuroscope import train
from neuroscope.trainer import projection_error_bound

from .conftest import fast_config


def test_projection_error_bound_holds_for_perturbed_eigenvectors():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = 12
        q, _ = np.linalg.qr(rng.normal(size=(n, n)))
        lam = np.sort(rng.uniform(-1, 10, size=n))[::-1]
        lam[1] = lam[0] - rng.uniform(0.05, 3)  # the gap the bound needs
        h = (q * lam) @ q.T
        w, vecs = np.linalg.eigh(h)  # the oracle
        v_true = vecs[:, -1]
        v = v_true + 10 ** rng.uniform(-8, -1) * rng.normal(size=n)
        v /= np.linalg.norm(v)
        v *= np.sign(v @ v_true)
        rayleigh = v @ h @ v
        residual = np.linalg.norm(h @ v - rayleigh * v)
        step = rng.normal(size=n) * 10 ** rng.uniform(-6, 0)
        bound = projection_error_bound(np.linalg.norm(step), residual, w[-1] - w[-2])
        assert abs(abs(step @ v) - abs(step @ v_true)) <= bound * (1 + 1e-9), trial


def test_projection_error_bound_without_a_gap_is_the_whole_update():
    assert projection_error_bound(2.0, 1e-3, 0.0) == pytest.approx(2 * math.sqrt(2))


@pytest.mark.parametrize("loss, names", [("poisson1d", ()), ("heat", ("x", "t"))])
def test_a_pde_run_records_its_points_and_axis_names(tmp_path, loss, names):
    cfg = fast_config(f"loss={loss}", "curvature.k=2", "curvature.every=5")
    result = train(cfg, out_dir=str(tmp_path / loss))
    g = hist.load(result.run_dir).geometry
    d = cfg.input_dim
    assert 0 < len(g.collocation_x) <= 200 and g.collocation_x.shape[1] == d
    assert 0 < len(g.boundary_x) <= 80 and g.boundary_x.shape[1] == d
    lo, hi = g.train_box
    assert np.all((g.collocation_x >= lo) & (g.collocation_x <= hi))
    assert g.axis_names == names
    err = result.history.metrics["projection_err"]
    measured = np.isfinite(result.history.metrics["projection"])
    assert np.all(np.isfinite(err[measured]) & (err[measured] > 0))


def test_a_run_without_a_pde_records_no_points_and_k1_no_projection_bound(tmp_path):
    result = train(fast_config(), out_dir=str(tmp_path / "run"))
    g = hist.load(result.run_dir).geometry
    assert len(g.collocation_x) == 0 and len(g.boundary_x) == 0
    assert np.all(np.isnan(result.history.metrics["projection_err"]))  # the bound needs lambda_2

"""Trustworthy runs: bit-reproducible, interruptible without losing work, resumable to the
same metrics, and honest about what they measured."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from neuroscope import OutputError, compose, resume, train
from neuroscope.rundir import read_metrics_csv

from .conftest import fast_config, run_cli



def test_same_seed_gives_byte_identical_metrics_csv(tmp_path):
    for name in ("a", "b"):
        train(fast_config("steps=40", "curvature.every=3", "data.noise=0.1", "data.sampling=uniform"), out_dir=tmp_path / name)
    a, b = ((tmp_path / n / "metrics.csv").read_bytes() for n in ("a", "b"))
    assert a == b and len(a.splitlines()) == 42
    c = train(fast_config("steps=40", "curvature.every=3", "data.noise=0.1", "data.sampling=uniform", "seed=1"), out_dir=tmp_path / "c")
    assert (c.run_dir / "metrics.csv").read_bytes() != a  # the seed matters


def test_summary_records_versions_device_and_dtype(tmp_path):
    s = train(fast_config("device.dtype=float64"), out_dir=tmp_path).summary["environment"]
    assert s["dtype"] == "float64" and s["device"].startswith("cpu")
    for lib in ("python", "torch", "numpy", "hydra", "omegaconf", "matplotlib"):
        assert s[lib]


def _start(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "neuroscope", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_rows(root, n, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        csvs = list((root / "outputs").glob("*/*/metrics.csv"))
        if csvs and len(csvs[0].read_text().splitlines()) > n:
            return csvs[0].parent
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.1)
    raise AssertionError("the run did not get going")


def _interrupt(tmp_path, args, sig):
    proc = _start(args, tmp_path)
    run_dir = _wait_for_rows(tmp_path, 30, proc)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=180)
    return proc.returncode, out, run_dir


@pytest.mark.slow
def test_sigterm_mid_run_exits_143_and_leaves_every_file(tmp_path):
    code, out, run_dir = _interrupt(tmp_path, ["steps=3000", "curvature.every=5", "viz.frames=10", "progress=false", "viz.format=gif", "viz.size=[6,4.5]"], signal.SIGTERM)
    assert code == 143, out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 30 <= summary["steps_done"] < 3000, out
    for name in ("metrics.csv", "history.npz", "model.pt", "checkpoint.pt", "dashboard.png", "animation.gif"):
        assert (run_dir / name).exists(), name
    m = read_metrics_csv(run_dir / "metrics.csv")
    assert m["step"][-1] == summary["steps_done"] and len(m["step"]) == summary["steps_done"] + 1
    assert "interrupted" in out


@pytest.mark.slow
def test_sigint_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path):
    steps = 400  # interrupted after 30 rows: the rest is the resume, compared with a full run
    args = [f"steps={steps}", "curvature.every=5", "viz.frames=10", "progress=false", "viz.format=none"]
    code, out, run_dir = _interrupt(tmp_path, args, signal.SIGINT)
    assert code == 130, out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["steps_done"] < steps, out

    resumed = run_cli([f"resume={run_dir}", "hydra.run.dir=resumed"], tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    r = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert r["status"] == "finished" and r["steps_done"] == steps and r["resumed_from"] == str(run_dir)

    full = train(compose(args), out_dir=tmp_path / "full")
    mr = read_metrics_csv(tmp_path / "resumed" / "metrics.csv")
    for column in ("step", "loss", "test_error", "gen_error", "sharpness", "projection"):
        np.testing.assert_allclose(mr[column], full.history.metrics[column], rtol=1e-6, atol=0, equal_nan=True, err_msg=column)


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    steps = 600  # killed after 60 rows: the rest is the resume, compared with a full run
    args = [f"steps={steps}", "curvature.every=0", "checkpoint.every=20", "viz.format=none", "progress=false"]
    proc = _start(args, tmp_path)
    run_dir = _wait_for_rows(tmp_path, 60, proc)
    proc.kill()  # no chance to clean up
    proc.wait()
    assert not (run_dir / "summary.json").exists()
    rows = read_metrics_csv(run_dir / "metrics.csv")  # readable although the process was killed
    assert len(rows["step"]) >= 60 and np.array_equal(rows["step"], np.arange(len(rows["step"])))
    out = tmp_path / "continued"
    result = resume(str(run_dir), out_dir=str(out))
    assert result.status == "finished" and result.summary["steps_done"] == steps
    full = train(compose(args), out_dir=tmp_path / "full")
    np.testing.assert_allclose(result.history.metrics["loss"], full.history.metrics["loss"], rtol=1e-6, atol=0)
    assert (out / "metrics.csv").read_text().splitlines()[:50] == (tmp_path / "full" / "metrics.csv").read_text().splitlines()[:50]


def test_resume_refuses_to_change_the_problem(tmp_path):
    train(fast_config(), out_dir=tmp_path / "a")
    with pytest.raises(Exception, match="lr cannot change"):
        resume(str(tmp_path / "a"), ["lr=0.5", "steps=60"], out_dir=str(tmp_path / "b"))


def test_unwritable_output_directory_is_a_clear_error_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(OutputError, match="Cannot write to"):
        train(fast_config(), out_dir=blocker / "run")
    proc = run_cli(["steps=5", f"hydra.run.dir={blocker}/run"], tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "Cannot write to" in proc.stderr and "Traceback" not in proc.stdout + proc.stderr


def test_non_converged_curvature_is_flagged_not_silently_written(tmp_path):
    result = train(fast_config("steps=20", "curvature.every=1", "curvature.max_iter=1", "curvature.tol=1e-12"), out_dir=tmp_path)
    m = read_metrics_csv(tmp_path / "metrics.csv")
    assert (m["eig_converged"] == 0).all()
    assert result.summary["curvature"]["not_converged"] == 21


def test_non_finite_metrics_are_reported_in_the_summary(tmp_path):
    # diverge_above=inf: the run goes on until the loss itself stops being a number
    result = train(fast_config("lr=100", "steps=300", "curvature.every=0", "diverge_above=inf"), out_dir=tmp_path)
    assert result.status == "diverged"
    assert result.summary["nonfinite"]["loss"] >= 1
    assert not np.isfinite(result.history.metrics["loss"][-1])

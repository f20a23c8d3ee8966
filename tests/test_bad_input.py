"""Bad input, one class per test, through the real command: exit 2, one paragraph naming the
bad value, no traceback, and no run folder for a run that never started. One case per class
runs in the quick suite; the other cases of each class are marked slow."""
from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from neuroscope import compose, train
from neuroscope.rundir import HISTORY_NPZ, SUMMARY_JSON, summary_values
from neuroscope.summary import log_outcome

from .conftest import FAST, fast_config, run_cli
from .test_sweep import _write_job, _write_multirun

slow = pytest.mark.slow


def assert_refused(proc: subprocess.CompletedProcess, fragment: str, root: Path) -> None:
    """Exit 2, the fragment in a one-line message, no traceback, no run or sweep folder."""
    out = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 2, out
    assert fragment in out, out
    assert "Traceback" not in out and "\n" not in out, out
    assert not (root / "outputs").exists(), sorted(p.name for p in (root / "outputs").rglob("*"))


def refuse(tmp_path: Path, args: list[str], fragment: str) -> str:
    proc = run_cli([*FAST, *args], tmp_path, timeout=120)  # args last: they win
    assert_refused(proc, fragment, tmp_path)
    return proc.stderr


@pytest.mark.parametrize("args, fragment", [
    (["seed=100000000000000000000000"], "seed=100000000000000000000000 is not allowed"),
    pytest.param(["data.train_range=[-inf,inf]", "data.test_range=[-inf,inf]"], "data.train_range=[-inf, inf] is not allowed", marks=slow),
    pytest.param(["data.train_range=[-1e300,1e300]", "data.test_range=[-1e300,1e300]"], "at most 1e+06", marks=slow),
    pytest.param(["lr=${nope}"], "lr cannot be used: Interpolation key 'nope' not found", marks=slow),
    pytest.param(["curvature.k=50"], "curvature.k=50 is larger than curvature.max_iter=30", marks=slow),
    pytest.param(["model.width=2", "model.depth=1", "curvature.k=10"], "larger than the model's 7 parameters", marks=slow),
    pytest.param(["diverge_above=0"], "diverge_above=0.0 is not allowed", marks=slow),
    pytest.param(["diverge_above=nan"], "diverge_above=nan is not allowed", marks=slow),
    pytest.param(["loss=poisson1d", "loss.n_collocation=0"], "loss.n_collocation=0 is not allowed", marks=slow),
    pytest.param(["loss=poisson2d", "loss.n_boundary=0"], "loss.n_boundary=0 is not allowed", marks=slow),
    pytest.param(["hydra.run.dir=''"], "hydra.run.dir='' is not allowed", marks=slow),
])
def test_values_out_of_range_are_refused_before_training(tmp_path, args, fragment):
    refuse(tmp_path, args, fragment)


@pytest.mark.parametrize("args, fragment", [
    (["model.width=100000", "model.depth=8"], "70,001,000,001 parameters"),
    pytest.param(["curvature.method=exact", "model.width=2000"], "dense Hessian", marks=slow),
    pytest.param(["steps=1000000000"], "use fewer steps", marks=slow),
])
def test_a_run_larger_than_the_memory_is_refused_with_the_estimate(tmp_path, args, fragment):
    assert "This run needs about" in refuse(tmp_path, args, fragment)


USER_CODE = '''
import torch

def raises(x):
    raise ValueError("no negative inputs")

def column(x):
    return x.sum(dim=1, keepdim=True)

def not_a_model(input_dim, width, depth, activation, bias):
    return None

class ColumnNet(torch.nn.Module):
    def __init__(self, input_dim, width, depth, activation, bias):
        super().__init__()
        self.layer = torch.nn.Linear(input_dim, 1)

    def forward(self, x):
        return self.layer(x)
'''


@pytest.mark.parametrize("args, fragment", [
    (["function._target_=subprocess.run"], "function._target_='subprocess.run' is refused"),
    pytest.param(["function._target_=os.system"], "function._target_='os.system' is refused", marks=slow),
    pytest.param(["function._target_=torch.save"], "a function of a library", marks=slow),
    pytest.param(["model._target_=builtins.print"], "model._target_='builtins.print' is refused", marks=slow),
    pytest.param(["loss=poisson1d", "loss.pde._target_=subprocess.run"], "loss.pde._target_='subprocess.run' is refused", marks=slow),
    pytest.param(["function=custom", "function._target_=user_code.raises"], "raised ValueError (no negative inputs)", marks=slow),
    pytest.param(["function=custom", "function._target_=user_code.column"], "returned Tensor of shape (3, 1) for 3 points", marks=slow),
    pytest.param(["model._target_=user_code.not_a_model"], "must be a torch.nn.Module subclass", marks=slow),
    pytest.param(["model._target_=user_code.ColumnNet"], "returns Tensor of shape (3, 1)", marks=slow),
    pytest.param(["loss=poisson1d", "curvature.hvp=func"], "curvature.hvp=func cannot measure", marks=slow),
    pytest.param(["function._target_=nowhere.fn"], "function._target_='nowhere.fn' cannot be imported", marks=slow),
])
def test_user_callables_are_checked_before_they_are_trusted(tmp_path, args, fragment):
    (tmp_path / "user_code.py").write_text(USER_CODE)
    refuse(tmp_path, args, fragment)


@pytest.mark.parametrize("args, fragment", [
    (["+foo=1"], "foo is not a setting of NeuroScope"),
    pytest.param(["+model.foo=1"], "model.foo is not a setting", marks=slow),
    pytest.param(["-m", "+foo=1,2"], "foo is not a setting", marks=slow),
])
def test_keys_outside_the_schema_are_refused_up_front(tmp_path, args, fragment):
    refuse(tmp_path, args, fragment)


def test_free_form_params_are_not_unknown_keys():
    from neuroscope.typed import to_config

    config = to_config(compose(["+function.params.phase=0.5", "loss=poisson1d", "+loss.pde.params.extra=1"]))
    assert config.function.params["phase"] == 0.5 and config.loss.pde.params["extra"] == 1


@pytest.mark.parametrize("args, fragment", [
    (["loss=poisson1d", "input_dim=2"], "loss=poisson1d is a PDE in 1 input dimension(s), but input_dim=2"),
    pytest.param(["resume=nowhere"], "resume=nowhere is not a run directory that can be resumed", marks=slow),
    pytest.param(["device=cuda"], "device=cuda was asked for", marks=slow),
])
def test_errors_once_found_at_run_time_are_found_in_preflight(tmp_path, args, fragment):
    import torch

    if "device=cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    refuse(tmp_path, args, fragment)


def test_resume_refuses_a_crafted_target_in_the_source_config_and_runs_nothing(tmp_path):
    import torch

    from neuroscope.checkpoint import config_data, fingerprint
    from neuroscope.config import Config

    # A real run folder, then its config and its checkpoint's record of it crafted together, so
    from neuroscope.typed import to_config
    # that the fingerprint check passes and only the kind of the _target_ stands in the way.
    src = tmp_path / "crafted"
    marker = tmp_path / "pwned"
    train(fast_config("loss=poisson1d", "steps=2"), out_dir=src)
    cfg = OmegaConf.load(src / ".hydra" / "config.yaml")
    cfg.loss.pde._target_ = "subprocess.run"
    cfg.loss.pde.params = {"args": ["touch", str(marker)]}
    OmegaConf.save(cfg, src / ".hydra" / "config.yaml")
    payload = torch.load(src / "checkpoint.pt", weights_only=True)
    payload["config"] = config_data(to_config(OmegaConf.merge(OmegaConf.structured(Config), cfg)))
    payload["fingerprint"] = fingerprint(payload["config"])
    torch.save(payload, src / "checkpoint.pt")
    refuse(tmp_path, [f"resume={src}", "steps=4"], "loss.pde._target_='subprocess.run' is refused")
    assert not marker.exists()


@pytest.mark.parametrize("args, fragment", [
    (["--config-dir", "CONF", "model.widht=3"], "Did you mean model.width?"),
    pytest.param(["-cd", "CONF", "-m", "lr=0.1,-1"], "lr=-1.0 is not allowed", marks=slow),
    pytest.param(["-cn", "config", "device=gpu"], "device=gpu is not an option", marks=slow),
    pytest.param(["--config-name", "config", "function=custom"], "function._target_ must be given", marks=slow),
    pytest.param(["--config-dir", "nowhere", "lr=0.1"], "--config-dir nowhere is not a directory", marks=slow),
    pytest.param(["width=32"], "Did you mean model.width?", marks=slow),
    pytest.param(["lr", "=0.1"], "write lr=0.1 with no spaces around '='", marks=slow),
    pytest.param(["experiment=eos_sweep"], "but -m was not given", marks=slow),
    pytest.param(["-m", "experiment=eos_sweep", "--cfg", "hydra"], "-m/--multirun cannot be combined with --cfg", marks=slow),
])
def test_the_same_checks_run_however_the_command_is_called(tmp_path, args, fragment):
    (tmp_path / "CONF").mkdir()
    proc = run_cli(args if "--cfg" in args else [*args, *FAST], tmp_path, timeout=120)
    assert_refused(proc, fragment, tmp_path)


@slow
def test_config_dir_sweep_names_job_folders_by_swept_keys_and_a_slash_value_nests_nothing(tmp_path):
    (tmp_path / "CONF").mkdir()
    proc = run_cli(["-cd", "CONF", "-m", "+experiment=eos_sweep", "lr=0.1,0.2", "name=a/b,c", *FAST], tmp_path)
    assert proc.returncode == 0, proc.stderr
    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0_lr=0.1", "1_lr=0.1", "2_lr=0.2", "3_lr=0.2"]
    assert all((sweep / j / SUMMARY_JSON).exists() for j in jobs)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    return train(fast_config("steps=5"), out_dir=str(tmp_path_factory.mktemp("run") / "run")).run_dir


def _render(run_dir: Path) -> subprocess.CompletedProcess:
    return run_cli([str(run_dir)], run_dir.parent, timeout=120, module="neuroscope.viz")


@pytest.mark.parametrize("damage, fragment", [
    ((SUMMARY_JSON, b'{"status": "fini'), "summary.json is damaged or not a NeuroScope file (JSONDecodeError"),
    pytest.param((SUMMARY_JSON, b"[1, 2]"), "it holds a JSON list, not an object", marks=slow),
    pytest.param((HISTORY_NPZ, b"PK\x03\x04truncated"), "history.npz is damaged or not a NeuroScope file", marks=slow),
    pytest.param((HISTORY_NPZ, None), "history.npz is damaged", marks=slow),  # a foreign npz
])
def test_render_of_a_damaged_run_folder_is_one_paragraph(tmp_path, finished_run, damage, fragment):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    name, content = damage
    if content is None:
        np.savez(run_dir / name, something=np.zeros(3))
    else:
        (run_dir / name).write_bytes(content)
    proc = _render(run_dir)
    out = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 2 and fragment in out and "Traceback" not in out, out
    assert len([ln for ln in out.splitlines() if "error" in ln]) == 1, out


def test_summary_of_a_sweep_with_one_damaged_job_reports_it_and_the_others(tmp_path):
    _write_multirun(tmp_path, ["lr=0.1,0.2", "steps=100"])
    _write_job(tmp_path, "0_lr=0.1", ["lr=0.1", "steps=100"], lr=0.1, status="finished")
    _write_job(tmp_path, "1_lr=0.2", ["lr=0.2", "steps=100"], lr=0.2, status="finished")
    (tmp_path / "1_lr=0.2" / SUMMARY_JSON).write_text('{"status": ')
    proc = run_cli([str(tmp_path), "--no-plot"], tmp_path, timeout=120, module="neuroscope.sweep")
    assert proc.returncode == 0, proc.stderr
    rows = (tmp_path / "summary.csv").read_text().splitlines()
    assert len(rows) == 3 and "finished" in rows[1]
    assert "failed" in rows[2] and "summary.json is damaged" in rows[2]


def test_final_values_of_a_diverged_run_are_the_last_finite_ones_with_their_steps(caplog):
    nan = math.nan
    metrics = {
        "step": np.array([0.0, 1, 2, 3, 4]),
        "loss": np.array([1.0, 2.0, 40.0, math.inf, nan]),
        "test_error": np.array([0.5, 0.6, 0.7, nan, nan]),
        "gen_error": np.array([0.9, 1.0, nan, nan, nan]),
        "rel_l2": np.array([0.3, 0.2, 0.1, nan, nan]),
        "rel_l2_gen": np.array([0.8, nan, nan, nan, nan]),
        "sharpness": np.array([7.0, nan, nan, nan, nan]),
    }
    values = summary_values(metrics, edge=20.0)  # 2/lr at lr 0.1
    assert values["final"] == {"loss": 40.0, "test_error": 0.7, "gen_error": 1.0, "rel_l2": 0.1, "rel_l2_gen": 0.8, "sharpness": 7.0}
    assert values["final_step"] == {"loss": 2, "test_error": 2, "gen_error": 1, "rel_l2": 2, "rel_l2_gen": 0, "sharpness": 0}
    summary = {"status": "diverged", "steps_done": 4, "two_over_lr": 20.0, "edge": 20.0, "edge_label": "2/lr",
               "nonfinite": {}, "curvature": {"not_converged": 0},
               **values}
    with caplog.at_level(logging.INFO, logger="neuroscope"):
        log_outcome(summary)
    assert "loss 40 (step 2)" in caplog.text and "sharpness 7 (step 0)" in caplog.text


@slow
def test_a_diverged_run_reports_finite_finals_in_its_summary(tmp_path):
    result = train(fast_config("lr=50", "steps=20"), out_dir=str(tmp_path / "run"))
    summary = json.loads((result.run_dir / SUMMARY_JSON).read_text())
    assert summary["status"] == "diverged"
    assert all(math.isfinite(float(summary["final"][k])) for k in ("loss", "sharpness"))
    assert summary["final_step"]["loss"] <= summary["steps_done"] and summary["final_step"]["sharpness"] == 0

"""Numbers that cannot disagree: a parameter a PDE shares with its exact solution has one
source; params keys work as the README writes them and unknown ones list what exists; the
relative L2 errors are recorded; summary.json is strict JSON."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroscope import compose, train
from neuroscope import rundir as hist
from neuroscope.boundary import Neumann
from neuroscope.config import ConfigError
from neuroscope.typed import to_config
from neuroscope.losses import build_pde
from neuroscope.run import build, build_target
from neuroscope.sweep import objective_value
from neuroscope.sweep.jobs import load_sweep

from .conftest import FAST

README = Path(__file__).resolve().parents[1] / "README.md"


def box_points(problem, box: tuple[float, float], n: int = 64) -> torch.Tensor:
    return problem.collocation_points(*box, n, torch.Generator().manual_seed(0), torch.float64, sampling="uniform")


def exact_residual(config) -> float:
    """max |N[u*]| of the built PDE at its own exact solution, the built target: 0 when the
    equation and the solution test_error compares with are one problem."""
    problem = build_pde(config.loss, config.input_dim)
    target = build_target(config.function)
    x = box_points(problem, tuple(config.data.train_range))
    return problem.residual(target, x).abs().max().item()


# ------------------------------------------------------------ one source for shared parameters

SHARED = {  # loss option: (a shared parameter, a new value)
    "poisson1d": ("frequency", 2.0),
    "poisson2d": ("frequency", 2.0),
    "helmholtz": ("frequency", 0.5),
    "heat": ("alpha", 0.2),
    "burgers": ("nu", 0.1),
}


@pytest.mark.parametrize("loss", SHARED)
def test_a_shared_parameter_set_under_function_params_moves_the_pde_and_its_solution(loss):
    key, value = SHARED[loss]
    config = to_config(compose([f"loss={loss}", f"function.params.{key}={value}"]))
    assert getattr(build_pde(config.loss, config.input_dim), key) == value
    # the residual of the exact solution (the function test_error compares with) vanishes:
    # equation and solution moved together
    assert exact_residual(config) < 1e-8


@pytest.mark.parametrize("loss", SHARED)
def test_a_shared_parameter_set_under_loss_pde_params_is_refused_with_where_to_set_it(loss):
    key, value = SHARED[loss]
    with pytest.raises(ConfigError, match=rf"loss.pde.params.{key}={value} disagrees with function.params.{key}=.*"
                                          rf"Set function.params.{key}={value} instead"):
        to_config(compose([f"loss={loss}", f"loss.pde.params.{key}={value}"]))


def test_a_pde_solution_name_that_is_not_the_function_is_refused():
    with pytest.raises(ConfigError, match="loss.pde.params.solution='sin_product' disagrees with function=sin_sum.*Set function=sin_product"):
        to_config(compose(["loss=poisson2d", "loss.pde.params.solution=sin_product"]))
    assert exact_residual(to_config(compose(["loss=poisson2d", "function=sin_product"]))) < 1e-8


def readme_block(language: str, first_line: str) -> str:
    """The README's code block in ``language`` whose text contains ``first_line``."""
    blocks = re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if first_line in b]
    return block


@pytest.fixture
def readme_custom_pde(tmp_path, monkeypatch):
    """The README's own PDE (mypde.py) and loss option (myconf/loss/advection.yaml)."""
    (tmp_path / "mypde.py").write_text(readme_block("python", "# mypde.py"))
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "myconf" / "loss").mkdir(parents=True)
    (tmp_path / "myconf" / "loss" / "advection.yaml").write_text(readme_block("yaml", "residual: mypde.advection"))
    return [f"hydra.searchpath=[file://{tmp_path / 'myconf'}]", "loss=advection"]


def test_the_readme_custom_pde_shares_its_coefficient_through_function_params(readme_custom_pde):
    config = to_config(compose([*readme_custom_pde, "function.params.c=1.5"]))
    problem = build_pde(config.loss, config.input_dim)
    assert problem.coefficients == {"c": 1.5} and problem.solution_params == {"c": 1.5}
    assert exact_residual(config) < 1e-6
    for spelling in ("coefficients.c", "solution_params.c"):
        with pytest.raises(ConfigError, match=rf"loss.pde.params.{spelling}=1.5 disagrees with function.params.c=0.5"):
            to_config(compose([*readme_custom_pde, f"loss.pde.params.{spelling}=1.5"]))


@pytest.mark.slow
def test_poisson1d_at_frequency_2_learns_the_exact_solution_at_frequency_2(tmp_path):
    cfg = compose(["loss=poisson1d", "function.params.frequency=2.0", "curvature.every=0", "viz.format=none", "progress=false"])
    result = train(cfg, out_dir=tmp_path)
    m = result.history.metrics
    assert m["test_error"][-1] < 1e-4  # 0.12 when the solution kept frequency π
    # independent oracle: sin(2x) itself on a fine grid of [-1, 1]
    x = torch.linspace(-1, 1, 201, dtype=torch.float64)[:, None]
    with torch.no_grad():
        pred = result.model(x.float()).double()
    exact = torch.sin(2 * x[:, 0])
    assert ((pred - exact).norm() / exact.norm()).item() < 1e-2
    assert m["rel_l2"][-1] < 1e-2


# ------------------------------------------------------------------ params keys without '+'


def test_the_readme_boundary_syntax_works_without_plus():
    config = to_config(compose(["loss=poisson1d", "loss.pde.params.boundary=neumann"]))
    assert isinstance(build_pde(config.loss, config.input_dim).boundary, Neumann)


def test_a_custom_function_takes_its_params_without_plus(tmp_path, monkeypatch):
    (tmp_path / "mytargets.py").write_text(readme_block("python", "def bump"))
    monkeypatch.syspath_prepend(str(tmp_path))
    config = to_config(compose(["function=custom", "function._target_=mytargets.bump", "function.params.height=2.0"]))
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    assert torch.allclose(build_target(config.function)(x), 2.0 * torch.exp(-x[:, 0] ** 2))


@pytest.mark.parametrize("overrides, listed", [
    (["function.params.freq=2"], "neuroscope.functions.sin does not accept function.params.freq: its parameters are frequency, amplitude"),
    (["loss=poisson1d", "loss.pde.params.bondary=neumann"],
     "neuroscope.pde.Poisson1D does not accept loss.pde.params.bondary: its parameters are frequency, solution, boundary"),
    (["loss=burgers", "loss.pde.params.mu=0.1"], "its parameters are nu, amplitude, speed, shift, boundary"),
])
def test_an_unknown_params_key_lists_the_parameters_the_target_accepts(overrides, listed):
    config = to_config(compose(overrides))
    with pytest.raises(ConfigError, match=re.escape(listed)):
        build_target(config.function)
        build_pde(config.loss, config.input_dim)


def test_an_unknown_custom_pde_coefficient_lists_the_residuals_parameters(readme_custom_pde):
    config = to_config(compose([*readme_custom_pde, "loss.pde.params.coefficients.speed=1"]))
    with pytest.raises(ConfigError, match=r"mypde.advection does not accept loss.pde.params.coefficients.speed: its parameters are c"):
        build_pde(config.loss, config.input_dim)


# --------------------------------------------------------------------- relative L2 errors


def test_rel_l2_columns_are_the_relative_l2_errors_of_the_test_and_generalization_points(tmp_path, caplog):
    cfg = compose([*FAST, "curvature.every=10"])
    with caplog.at_level("INFO", logger="neuroscope"):
        result = train(cfg, out_dir=tmp_path)
    problem = build(to_config(cfg)).problem  # the same seeded point sets
    with torch.no_grad():
        for points, values, column in ((problem.test_x, problem.test_y, "rel_l2"), (problem.gen_x, problem.gen_y, "rel_l2_gen")):
            diff = result.model(points).double().numpy() - values.double().numpy()
            expected = np.linalg.norm(diff) / np.linalg.norm(values.double().numpy())
            assert result.history.metrics[column][-1] == pytest.approx(expected, rel=1e-5)
    summary = hist.read_summary(tmp_path)
    assert summary["final"]["rel_l2"] == result.history.metrics["rel_l2"][-1]
    assert summary["best"]["rel_l2_gen"] == np.nanmin(result.history.metrics["rel_l2_gen"])
    assert f"relative L2 {summary['final']['rel_l2']:.3g} (outside the box {summary['final']['rel_l2_gen']:.3g})" in caplog.text


# ------------------------------------------------------------------------ strict JSON


def reject_constant(name: str):
    raise ValueError(f"summary.json holds {name}, which is not JSON")


def test_summary_json_is_strict_json_with_null_for_values_not_measured(tmp_path):
    # no curvature (no sharpness) and no points outside the training box (no gen_error)
    cfg = compose([*FAST, "curvature.every=0", "data.test_range=[-3.141592653589793,3.141592653589793]"])
    train(cfg, out_dir=tmp_path)
    text = (tmp_path / hist.SUMMARY_JSON).read_text()
    summary = json.loads(text, parse_constant=reject_constant)
    assert summary["final"]["sharpness"] is None and summary["final"]["gen_error"] is None
    assert summary["final"]["rel_l2_gen"] is None and summary["max_sharpness"] is None
    assert '"nan"' not in text and math.isfinite(summary["final"]["test_error"])


def test_sweep_readers_take_null_as_missing(tmp_path):
    job = tmp_path / "0_lr=0.1"
    job.mkdir()
    hist.write_summary(job, {"status": "finished", "lr": 0.1, "steps": 5, "steps_done": 5,
                             "final": {"loss": 0.5, "test_error": 0.4, "gen_error": math.nan, "sharpness": math.nan},
                             "max_sharpness": math.nan, "late_sharpness_over_edge": math.nan})
    assert json.loads((job / hist.SUMMARY_JSON).read_text())["final"]["gen_error"] is None
    (loaded,) = load_sweep(tmp_path).jobs
    assert loaded.values["final_loss"] == 0.5 and math.isnan(loaded.values["final_gen_error"])
    assert math.isnan(loaded.values["max_sharpness"])
    assert objective_value(hist.read_summary(job), penalty=1e10) == 1e10

"""Specification of the whole-spectrum settings in a run: the columns and files they add (and that
a default run adds none), spectrum.png from the render step, their one-paragraph config errors,
and the late values that run summaries and sweep tables carry."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.func import functional_call

from neuroscope import ConfigError, compose, train
from neuroscope.typed import to_config
from neuroscope.curvature import exact_hessian
from neuroscope.data import make as make_problem
from neuroscope.losses import Objective, build_pde
from neuroscope.run import build_target
from neuroscope.rundir import SPECTRUM_NPZ, SPECTRUM_PNG, load_spectrum, read_metrics_csv, read_summary, summary_values
from neuroscope.sweep.jobs import METRIC_COLUMNS, Job, Sweep, metrics_values
from neuroscope.sweep.table import table_columns
from neuroscope.trainer import metric_columns
from neuroscope.viz.render import main as render_main

from .conftest import fast_config

# torch's own forward-mode AD loads its jvp decompositions through torch.jit.script, once
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

EVERYTHING = (
    "loss=poisson1d", "steps=6", "curvature.every=2", "curvature.lambda_min=true", "curvature.terms=true",
    "curvature.ggn=true", "curvature.trace_probes=3", "curvature.density.every=3", "curvature.density.probes=2",
    "curvature.density.steps=8", "curvature.max_iter=60", "curvature.tol=1e-8",
    "device.dtype=float64", "loss.n_collocation=24", "model.width=6",
)


@pytest.fixture(scope="module")
def everything(tmp_path_factory):
    return train(fast_config(*EVERYTHING), out_dir=tmp_path_factory.mktemp("spectrum"))


def test_a_default_run_adds_no_column_and_no_spectrum_file(tmp_path):
    result = train(fast_config("steps=4", "curvature.every=2"), out_dir=tmp_path)
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == metric_columns(["data"], 1)
    assert not (tmp_path / SPECTRUM_NPZ).exists() and "late" not in result.summary


def test_every_setting_adds_its_columns_on_its_schedule(everything):
    metrics = read_metrics_csv(everything.run_dir / "metrics.csv")
    new = ["lambda_min", "lambda_min_residual", "sharpness_over_abs_lambda_min", "sharpness_pde", "sharpness_bc",
           "sharpness_ggn", "trace", "trace_se"]
    assert list(metrics)[-len(new):] == new
    measured = {c: [int(s) for s in metrics["step"][np.isfinite(metrics[c])]] for c in ("sharpness_pde", "trace")}
    assert measured == {"sharpness_pde": [0, 2, 4, 6], "trace": [0, 2, 4, 6]}
    assert np.all(metrics["lambda_min"][::2] <= metrics["sharpness"][::2])
    ratio = metrics["sharpness"][::2] / np.abs(metrics["lambda_min"][::2])
    assert np.allclose(metrics["sharpness_over_abs_lambda_min"][::2], ratio)


def test_the_final_per_term_sharpness_is_that_of_the_final_terms_dense_hessian(everything):
    metrics = read_metrics_csv(everything.run_dir / "metrics.csv")
    model = everything.model
    params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    names = [n for n, _ in model.named_parameters()]
    config = to_config(fast_config(*EVERYTHING))
    pde = build_pde(config.loss, 1)
    problem = make_problem(config, build_target(config.function), pde=pde, device=torch.device("cpu"), dtype=torch.float64)
    objective = Objective(config.loss, problem, pde)

    def term(name):
        return lambda ps: objective(lambda x: functional_call(model, dict(zip(names, ps)), (x,)), ps)[1][name]

    for name in ("pde", "bc"):
        top = float(torch.linalg.eigvalsh(exact_hessian(term(name), params))[-1])
        assert math.isclose(metrics[f"sharpness_{name}"][-1], top, rel_tol=1e-6)


def test_spectrum_npz_holds_a_density_per_scheduled_step_on_one_grid(everything):
    spectrum = load_spectrum(everything.run_dir)
    assert list(spectrum["step"]) == [0, 3, 6]
    assert spectrum["density"].shape == (3, 361) and spectrum["eigenvalue"].shape == (361,)
    assert float(spectrum["lr"]) == pytest.approx(0.02)
    integrals = np.trapezoid(spectrum["density"], spectrum["coordinate"], axis=1)
    assert np.allclose(integrals, 1.0, rtol=1e-6)


def test_render_draws_spectrum_png_and_redraws_it(everything, capsys):
    png = everything.run_dir / SPECTRUM_PNG
    png.unlink(missing_ok=True)
    assert render_main([str(everything.run_dir), "viz.format=none"]) == 0
    assert png.exists() and png.stat().st_size > 10_000
    assert "spectrum.png" in capsys.readouterr().out


def test_summaries_carry_the_late_values_of_the_new_columns(everything):
    late = read_summary(everything.run_dir)["late"]
    assert set(late) == {"lambda_min", "sharpness_over_abs_lambda_min", "sharpness_pde", "sharpness_bc",
                         "sharpness_ggn", "trace"}
    metrics = read_metrics_csv(everything.run_dir / "metrics.csv")
    assert late["sharpness_pde"] == pytest.approx(metrics["sharpness_pde"][-1])  # the last 20% of 6 steps: step 6
    assert "late" not in summary_values({"step": np.arange(3.0), "sharpness": np.ones(3)}, 0.1)


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["curvature.every=0", "curvature.terms=true"], "curvature.terms=true is measured with the sharpness"),
        (["curvature.method=power", "curvature.lambda_min=true"], "needs curvature.method=lanczos or exact"),
        (["loss=l1", "curvature.ggn=true"], "loss.data_term=l1 is not"),
        (["curvature.trace_probes=1"], "curvature.trace_probes=1"),
        (["curvature.every=0", "curvature.trace_probes=4"], "has no schedule"),
        (["curvature.density.every=5", "curvature.density.steps=1"], "steps=1"),
        (["curvature.density.sigma=0"], "sigma=0.0"),
    ],
)
def test_spectrum_settings_fail_with_one_paragraph_naming_the_value(overrides, fragment):
    with pytest.raises(ConfigError) as e:
        to_config(compose(overrides))
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_sweep_tables_carry_the_late_columns_of_jobs_that_measured_them():
    metrics = {"step": np.arange(11.0), "sharpness": np.ones(11), "sharpness_pde": np.arange(11.0)}
    values = metrics_values(metrics, 0.1)
    assert values["late_sharpness_pde"] == pytest.approx(9.0)  # steps 8, 9, 10: the last 20%
    jobs = [Job(num=0, name="0_lr=0.1", overrides={"lr": "0.1"}, status="finished", run_dir=None, values=values),
            Job(num=1, name="1_lr=0.2", overrides={"lr": "0.2"}, status="missing", run_dir=None,
                values={c: math.nan for c in METRIC_COLUMNS})]
    columns = table_columns(Sweep(sweep_dir=Path("."), swept_keys=["lr"], jobs=jobs))
    assert columns.index("late_sharpness_pde") == columns.index("late_sharpness_over_edge") + 1


def test_pinn_conditioning_preset_sweeps_three_frequencies_with_per_term_sharpness_and_density():
    from hydra import compose as hydra_compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module("neuroscope.conf", version_base="1.3"):
        cfg = hydra_compose("config", overrides=["experiment=pinn_conditioning"], return_hydra_config=True)
        frequencies = [float(v) for v in str(cfg.hydra.sweeper.params["function.params.frequency"]).split(",")]
    GlobalHydra.instance().clear()
    assert frequencies == pytest.approx([math.pi, 2 * math.pi, 4 * math.pi])
    config = to_config(compose(["experiment=pinn_conditioning"]))
    assert config.loss.name == "poisson1d" and config.curvature.terms and config.curvature.density.every > 0


def test_a_resumed_run_continues_the_survey_as_if_never_stopped(tmp_path):
    args = [*EVERYTHING[:1], *EVERYTHING[2:]]  # all but steps
    first = train(fast_config(*args, "steps=6"), out_dir=tmp_path / "first")
    resumed = train(fast_config(*args, f"resume={first.run_dir}", "steps=9"), out_dir=tmp_path / "resumed",
                    overrides=["steps=9"])
    full = train(fast_config(*args, "steps=9"), out_dir=tmp_path / "full")
    again, whole = read_metrics_csv(resumed.run_dir / "metrics.csv"), full.history.metrics
    for column in ("sharpness", "lambda_min", "sharpness_pde", "sharpness_bc", "sharpness_ggn", "trace"):
        np.testing.assert_allclose(again[column], whole[column], rtol=1e-6, equal_nan=True, err_msg=column)
    resumed_spectrum, full_spectrum = load_spectrum(resumed.run_dir), load_spectrum(full.run_dir)
    assert list(resumed_spectrum["step"]) == list(full_spectrum["step"]) == [0, 3, 6, 9]
    np.testing.assert_allclose(resumed_spectrum["density"], full_spectrum["density"], rtol=1e-6, atol=1e-12)

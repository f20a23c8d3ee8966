"""Pictures that do not hide what happened: a clipped prediction names its true extremes, the
header names the model, frame 0 shows the first values, the projection panel draws the floors
it cannot resolve below, PDE runs show their points, axes and pointwise error, and sweeps over
seeds are aggregated (summary_by_<key>.csv), Optuna sweeps drawn as scatters."""
from __future__ import annotations

import csv
import itertools
import math

import matplotlib as mpl
import numpy as np
from matplotlib.collections import PolyCollection

from neuroscope import rundir as hist
from neuroscope import sweep as sw
from neuroscope import viz
from neuroscope.sweep import figure as sweep_figure
from neuroscope.viz.dashboard import run_facts
from neuroscope.viz.render import config_facts

from .test_pictures import OPTUNA_LRS, _diverged_history, _grid_with_seeds, _optuna_like, _pde_history
from .test_plotting import LR, synthetic_history, write_run
from .test_sweep import _write_job, _write_multirun

VIZ = {"format": "none", "dpi": 50, "size": [8.0, 6.0]}


def _dashboard(run):
    dash = viz.Dashboard(hist.load(run), viz.resolve_viz(VIZ))
    dash.update(dash.n_frames - 1)
    return dash


def _texts(dash) -> str:
    return " | ".join(t.get_text() for t in dash.fig.findobj(mpl.text.Text))


def test_a_clipped_prediction_names_its_true_extremes(tmp_path):
    dash = _dashboard(write_run(tmp_path / "run", _diverged_history(), diverge_at=250))
    fit = dash.panels["fit"]
    assert np.nanmax(fit.pred_line.get_ydata()) < 20  # drawn clipped ...
    note = fit.range_note.get_text()
    assert "↑ prediction off scale (max 9e+06)" in note and "↓ prediction off scale (min -9e+06)" in note  # ... and said
    calm = _dashboard(write_run(tmp_path / "calm", synthetic_history()))
    assert calm.panels["fit"].range_note.get_text() == ""


def test_header_names_width_depth_activation_parameters_and_k(tmp_path, monkeypatch):
    run = write_run(tmp_path / "run", synthetic_history(k=3))
    summary = hist.read_summary(run)
    hist.write_summary(run, {**summary, "n_params": 321})
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text(
        "lr: 0.1\nmodel:\n  width: 16\n  depth: 2\n  activation: tanh\ncurvature:\n  k: 3\nviz:\n  format: none\n")
    header = "width 16   ·   depth 2   ·   tanh   ·   321 parameters   ·   k = 3"
    assert run_facts({**config_facts(run), **hist.load(run).meta}) == header
    drawn = []
    original = viz.Dashboard._header_decor

    def spy(dash):
        out = original(dash)
        drawn.extend(t.get_text() for t in out)
        return out

    monkeypatch.setattr(viz.Dashboard, "_header_decor", spy)
    viz.render(run)  # the picture render() writes has the line
    assert header in drawn
    bare = write_run(tmp_path / "bare", synthetic_history())  # no config, no n_params: nothing made up
    assert config_facts(bare) == {} and run_facts(hist.load(bare).meta) == ""


def test_frame_zero_shows_the_first_values(tmp_path):
    dash = viz.Dashboard(hist.load(write_run(tmp_path / "run", synthetic_history())), viz.resolve_viz(VIZ))
    dash.update(0)
    for name in ("loss", "sharp", "proj"):
        for s in dash.panels[name].series:
            if len(s.y):
                assert len(s.line.get_xdata()) >= 1 and s.line.get_marker() == "o", (name, s.column)
    dash.update(dash.n_frames - 1)  # the whole run: lines without the dot
    assert all(s.line.get_marker() == "None" for s in dash.panels["loss"].series)


def test_projection_floors_from_the_error_bound_and_float_rounding(tmp_path):
    h = synthetic_history()
    n = len(h.metrics["step"])
    h.metrics["grad_norm"] = np.linspace(2.0, 0.5, n)
    h.metrics["projection_err"] = np.where(np.isfinite(h.metrics["projection"]), 3e-6, np.nan)
    run = write_run(tmp_path / "run", h)
    hist.write_summary(run, {**hist.read_summary(run), "environment": {"dtype": "float32"}})
    ax = _dashboard(run).ax["proj"]
    band = [c for c in ax.collections if isinstance(c, PolyCollection) and c.get_label() == "not resolved (error bound)"]
    assert len(band) == 1 and np.isclose(band[0].get_paths()[0].vertices[:, 1].max(), 3e-6)
    (rounding,) = [ln for ln in ax.lines if ln.get_label().startswith("float rounding")]
    assert np.allclose(rounding.get_ydata(), 2.0**-23 * LR * h.metrics["grad_norm"])  # eps(float32)·lr·‖∇L‖
    plain = _dashboard(write_run(tmp_path / "plain", synthetic_history())).ax["proj"]  # neither column: no floor
    assert not [ln for ln in plain.lines if ln.get_label().startswith("float rounding")] and plain.get_legend() is None


def test_pde_geometry_round_trips_and_older_history_files_still_load(tmp_path):
    h = _pde_history(time_dependent=True)
    run = write_run(tmp_path / "run", h)
    g = hist.load(run).geometry
    assert np.array_equal(g.collocation_x, h.geometry.collocation_x) and g.axis_names == ("x", "t")
    assert np.array_equal(g.boundary_x, h.geometry.boundary_x)
    with np.load(run / hist.HISTORY_NPZ) as z:  # as written before these fields existed
        old = {k: z[k] for k in z.files if k not in ("collocation_x", "boundary_x", "axis_names")}
    np.savez_compressed(run / hist.HISTORY_NPZ, **old)
    g = hist.load(run).geometry
    assert g.collocation_x.shape[0] == 0 and g.boundary_x.shape[0] == 0 and g.axis_names == ()


def test_pde_fit_shows_its_points_axis_names_and_pointwise_error(tmp_path):
    dash = _dashboard(write_run(tmp_path / "heat", _pde_history(time_dependent=True)))
    fit = dash.panels["fit"]
    assert (fit.ax.get_xlabel(), fit.ax.get_ylabel(), fit.ax.get_zlabel()) == ("x", "t", "u(x, t)")
    labels = [t.get_text() for t in fit.legend.get_texts()]
    assert "collocation points" in labels and "boundary points" in labels and "training inputs" not in labels
    h = dash.history
    expected = np.abs(h.frame_pred[-1] - h.geometry.plot_target).reshape(h.geometry.plot_shape).T  # x across, t up
    shown = np.asarray(fit.error.image.get_array())
    assert np.allclose(np.where(expected > 0, expected, np.nan), shown, equal_nan=True)

    dash = _dashboard(write_run(tmp_path / "poisson", _pde_history()))
    fit = dash.panels["fit"]
    labels = [t.get_text() for t in fit.ax.get_legend().get_texts()]
    assert "training points" not in labels and {"collocation points", "boundary points"} <= set(labels)
    g = dash.history.geometry
    err = np.abs(dash.history.frame_pred[-1] - g.plot_target)[np.argsort(g.plot_x[:, 0])]
    assert np.allclose(fit.error.line.get_ydata(), np.where(err > 0, err, np.nan), equal_nan=True)


def test_a_seed_sweep_is_aggregated_with_mean_std_and_count(tmp_path):
    sweep_dir = _grid_with_seeds(tmp_path / "sw")
    result = sw.summarize(sweep_dir)
    assert result.by_seed == sweep_dir / "summary_by_lr.csv"
    with open(result.by_seed, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["lr"] for r in rows] == ["0.05", "0.1", "0.2"] and all(r["seeds"] == "3" for r in rows)
    for row in rows:
        lr = float(row["lr"])
        finals = [0.01 * (1 + seed) * lr for seed in range(3)]  # what each job's summary says
        assert math.isclose(float(row["final_loss_mean"]), np.mean(finals))
        assert math.isclose(float(row["final_loss_std"]), np.std(finals, ddof=1))
        assert row["final_loss_count"] == "3"
    fig = sw.draw_sweep(sw.load_sweep(sweep_dir))
    sharp = next(ax for ax in fig.axes if ax.get_title().startswith("sharpness"))
    means = [ln for ln in sharp.lines if ln.get_label() == "mean of 3 seeds"]
    assert len(means) == 3 and len([c for c in sharp.collections if isinstance(c, PolyCollection)]) == 3


def test_an_optuna_sweep_is_a_scatter_with_round_ticks(tmp_path):
    sweep = sw.load_sweep(_optuna_like(tmp_path / "opt"))
    assert not sweep.grid
    fig = sw.draw_sweep(sweep)
    errors = next(ax for ax in fig.axes if ax.get_title().startswith("final errors"))
    lines = [ln for ln in errors.lines if not ln.get_label().startswith("_")]
    assert lines and all(ln.get_linestyle() == "None" for ln in lines)  # points, no line through chosen values
    fig.canvas.draw()
    ticks = [float(t.get_text()) for t in errors.get_xticklabels() if t.get_text()]
    assert ticks and all(round(v / 10 ** math.floor(math.log10(v)), 6) in (1.0, 2.0, 5.0) for v in ticks)
    assert len([t for t in errors.texts if t.get_text() == "diverged"]) == 1  # three close diverged jobs, one label
    assert len(OPTUNA_LRS) == len(sweep.jobs)


def test_the_lightest_job_colour_is_readable_on_white(tmp_path):
    _write_multirun(tmp_path, ["lr=0.01,0.02,0.05,0.1,0.2"])
    for num, lr in enumerate((0.01, 0.02, 0.05, 0.1, 0.2)):
        _write_job(tmp_path, f"{num}_lr={lr}", [f"lr={lr}"], lr=lr, status="finished")
    sweep = sw.load_sweep(tmp_path)
    layout = sweep_figure._layout(sweep)

    def luminance(hex_color: str) -> float:
        c = np.array(mpl.colors.to_rgb(hex_color))
        c = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return float(0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2])

    contrast = [(1.05) / (luminance(layout.color(j)) + 0.05) for j in sweep.jobs]
    assert min(contrast) >= 2.0  # viridis' yellow end (1.1:1) would fail


def test_typed_values_too_close_for_their_labels_leave_some_unlabelled(tmp_path):
    values = (0.09, 0.1, 0.11, 1.0)
    _write_multirun(tmp_path, [f"lr={','.join(map(str, values))}"])
    for num, lr in enumerate(values):
        _write_job(tmp_path, f"{num}_lr={lr}", [f"lr={lr}"], lr=lr, status="finished")
    fig = sw.draw_sweep(sw.load_sweep(tmp_path))
    errors = next(ax for ax in fig.axes if ax.get_title().startswith("final errors"))
    labelled = [float(t.get_text()) for t in errors.get_xticklabels() if t.get_text()]
    assert 1.0 in labelled and 0.09 in labelled and len(labelled) < len(values)
    assert list(itertools.accumulate(labelled, max)) == labelled


def test_a_64_job_sweep_gets_a_colour_bar_of_its_lrs_and_counts_of_how_jobs_ended(tmp_path):
    from .test_pictures import _lr_grid_64

    fig = sw.draw_sweep(sw.load_sweep(_lr_grid_64(tmp_path / "sw")))
    bars = [ax for ax in fig.axes if "64 values" in ax.get_xlabel()]
    assert len(bars) == 1
    fig.canvas.draw()
    ticks = [t.get_text() for t in bars[0].get_xticklabels() if t.get_text()]
    assert ticks[0] == "0.02" and ticks[-1] == "0.2" and 5 <= len(ticks) <= 9
    entries = " | ".join(t.get_text() for leg in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
                         for t in leg.get_texts())
    assert "finished: 61 jobs" in entries and "stopped early (failed, interrupted): 1" in entries and "diverged: 2" in entries
    assert "lr=0.02:" not in entries  # no per-job entries: 64 do not fit beside a panel

"""The lean run outside the training loop: many folders' pictures (render_many), MP4s in two
halves, the model probe on the CPU, a config checked once, a sweep's values checked without
composing each, and the exit that skips the final collections."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from neuroscope import cli, compose
from neuroscope import checks
from neuroscope import rundir as hist
from neuroscope.config import ConfigError, VizConfig
from neuroscope.viz.dashboard import Dashboard
from neuroscope.viz.writers import HALVES_FROM, write_mp4, write_mp4_halves
from PIL import Image

from .conftest import FAST, run_cli
from .test_plotting import synthetic_history, write_run

render_module = importlib.import_module("neuroscope.viz.render")

# 60 frames: an MP4 in two halves; 320x240 px keeps drawing cheap
VIDEO = {"format": "mp4", "frames": 60, "fps": 10, "dpi": 40, "size": "[8.0, 6.0]"}


def _frames(path: Path) -> list[np.ndarray]:
    reader = imageio_ffmpeg.read_frames(str(path))
    next(reader)  # the metadata
    return [np.frombuffer(f, np.uint8).copy() for f in reader]


def _folders(root: Path, n: int, viz: dict) -> list[Path]:
    return [write_run(root / f"run{i}", synthetic_history(seed=i, frames=61, steps=300 + 40 * i), name=f"m{i}", viz=viz)
            for i in range(n)]


# ----------------------------------------------------------------------------- render_many


@pytest.mark.slow
def test_render_many_leaves_each_folder_what_render_writes_alone(tmp_path):
    alone = _folders(tmp_path / "alone", 3, VIDEO)
    many = _folders(tmp_path / "many", 3, VIDEO)
    for d in alone:
        render_module.render(d)
    assert render_module.render_many(many, workers=2) == ["done"] * 3
    for a, m in zip(alone, many):
        for name in (hist.DASHBOARD_PNG, hist.ANIMATION_MP4):
            assert (a / name).read_bytes() == (m / name).read_bytes(), (m, name)
    assert len(_frames(many[0] / hist.ANIMATION_MP4)) == 60


def test_render_many_keeps_drawing_after_a_damaged_folder_and_a_dead_worker(tmp_path, monkeypatch, caplog):
    dirs = _folders(tmp_path / "many", 4, {**VIDEO, "format": "none"})
    (alone,) = _folders(tmp_path / "alone", 1, {**VIDEO, "format": "none"})
    render_module.render(alone)
    (dirs[1] / hist.HISTORY_NPZ).write_bytes(b"not an npz")  # fails with an error
    real = render_module.render

    def dies_on_the_third(run_dir, viz=None, **kwargs):  # the workers are forked: they inherit this
        if Path(run_dir) == dirs[2]:
            os._exit(9)  # a crash takes the worker process down
        return real(run_dir, viz, **kwargs)

    monkeypatch.setattr(render_module, "render", dies_on_the_third)
    outcomes = render_module.render_many(dirs, workers=2)
    assert outcomes == ["done", "failed", "failed", "done"]
    assert (dirs[0] / hist.DASHBOARD_PNG).read_bytes() == (alone / hist.DASHBOARD_PNG).read_bytes()
    assert (dirs[3] / hist.DASHBOARD_PNG).stat().st_size > 0
    assert any(str(dirs[2]) in r.getMessage() and "killed its worker" in r.getMessage() for r in caplog.records)


def test_render_many_in_this_process_when_asked(tmp_path, monkeypatch):
    dirs = _folders(tmp_path, 2, {**VIDEO, "format": "none"})
    monkeypatch.setattr(render_module, "_render_in_pool", lambda *a: pytest.fail("no pool for workers=1"))
    assert render_module.render_many(dirs, workers=1) == ["done", "done"]
    assert render_module.render_many([], workers=0) == []


def _fake_proc(root: Path, loadavg: str, thread_states: str) -> str:
    """A /proc with its load figures and this process's threads in the given states (R running, S asleep)."""
    root.mkdir(parents=True)
    (root / "loadavg").write_text(loadavg)
    for i, state in enumerate(thread_states):
        task = root / "self" / "task" / str(100 + i)
        task.mkdir(parents=True)
        task.joinpath("stat").write_text(f"{100 + i} (pt_main (thread)) {state} 1 2 3\n")
    return str(root)


def test_idle_cores_are_counted_now_not_by_the_last_minutes_load(tmp_path, monkeypatch):
    """Just after this process trained on both cores the one-minute load reads 2.0 on an idle
    machine: the running tasks now decide (here: only this process's own thread runs)."""
    monkeypatch.setattr(render_module, "_usable_cores", lambda: 2)
    just_trained = _fake_proc(tmp_path / "a", "2.00 1.10 0.50 1/312 999\n", "RSS")
    assert render_module._running_elsewhere(just_trained, gap=0) == 0
    assert render_module._idle_cores(just_trained) == 1
    other_busy = _fake_proc(tmp_path / "b", "0.10 0.10 0.10 2/312 999\n", "RS")
    assert render_module._running_elsewhere(other_busy, gap=0) == 1
    assert render_module._idle_cores(other_busy) == 0
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.2, 0.2))  # no /proc: the load average
    assert render_module._idle_cores(str(tmp_path / "none")) == 1


# ----------------------------------------------------------------------------- MP4 halves


@pytest.fixture
def dashboard(tmp_path):
    run = write_run(tmp_path / "run", synthetic_history(frames=61), viz=VIDEO)
    dash = Dashboard(hist.load(run), render_module.resolve_viz(None, run))
    dash.update(dash.n_frames - 1)
    return dash


def test_a_frame_is_the_same_whatever_was_drawn_before(dashboard):
    in_order = [f.copy() for f in dashboard.frames()]
    assert all(np.array_equal(a, b) for a, b in zip(dashboard.frames(31, 34), in_order[31:34]))
    for i in (33, 5, 59, 0):
        dashboard.update(i)
        assert np.array_equal(dashboard.rgba(), in_order[i]), i


def test_halves_in_parallel_are_the_bytes_of_halves_in_turn_and_show_every_frame(dashboard, tmp_path):
    assert dashboard.n_frames >= HALVES_FROM
    assert write_mp4_halves(tmp_path / "p.mp4", dashboard, 10, parallel=True) == dashboard.n_frames
    assert write_mp4_halves(tmp_path / "s.mp4", dashboard, 10, parallel=False) == dashboard.n_frames
    assert (tmp_path / "p.mp4").read_bytes() == (tmp_path / "s.mp4").read_bytes()
    write_mp4(tmp_path / "one.mp4", dashboard.frames(), 10)
    halves, one = _frames(tmp_path / "p.mp4"), _frames(tmp_path / "one.mp4")
    assert len(halves) == len(one) == dashboard.n_frames
    source = [f[..., :3].reshape(-1).astype(int) for f in dashboard.frames()]
    # the halves are as faithful to the drawn frames as one stream is (lossy either way)
    err = [np.abs(h.astype(int) - s).mean() for h, s in zip(halves, source)]
    err_one = [np.abs(o.astype(int) - s).mean() for o, s in zip(one, source)]
    assert max(err) < 2 * max(err_one) + 1


def test_a_failed_second_half_is_drawn_by_the_parent(dashboard, tmp_path):
    parent = os.getpid()

    def fails_in_the_child(path, frames, fps):
        if os.getpid() != parent:
            raise RuntimeError("the forked copy fails")
        return write_mp4(path, frames, fps)

    n = write_mp4_halves(tmp_path / "x.mp4", dashboard, 10, parallel=True, write=fails_in_the_child)
    write_mp4_halves(tmp_path / "s.mp4", dashboard, 10, parallel=False)
    assert n == dashboard.n_frames
    assert (tmp_path / "x.mp4").read_bytes() == (tmp_path / "s.mp4").read_bytes()


# ----------------------------------------------------------------------------- checks


USER_MODELS = """
import torch

class ColumnNet(torch.nn.Module):
    def __init__(self, input_dim, **kw):
        super().__init__()
        self.lin = torch.nn.Linear(input_dim, 1)

    def forward(self, x):
        return self.lin(x)

class Raises(ColumnNet):
    def forward(self, x):
        raise ValueError("no forward here")

class Unbuildable(ColumnNet):
    def __init__(self, input_dim, **kw):
        raise TypeError("cannot build")
"""


def test_the_model_probe_on_the_cpu_agrees_with_the_meta_probe_and_leaves_the_rng(tmp_path, monkeypatch):
    (tmp_path / "lean_user_models.py").write_text(USER_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = checks.to_config(compose([]))
    state = torch.get_rng_state()
    n_cpu = checks.probe_model(config)
    assert torch.equal(torch.get_rng_state(), state)  # the probe's weights come from a forked RNG
    monkeypatch.setattr(checks, "CPU_PROBE_PARAMS", 0)  # every model on the meta device, as before
    assert checks.probe_model(config) == n_cpu == sum(p.numel() for p in checks.build_model(config.model, 1).parameters())
    for name, fragment in [("ColumnNet", "returns Tensor of shape (3, 1)"), ("Raises", "no forward here"),
                           ("Unbuildable", "could not be built")]:
        messages = []
        for limit in (0, 10**9):  # meta, then CPU
            monkeypatch.setattr(checks, "CPU_PROBE_PARAMS", limit)
            with pytest.raises(ConfigError) as e:
                checks.probe_model(checks.to_config(compose([f"model._target_=lean_user_models.{name}"])))
            messages.append(str(e.value))
        assert messages[0] == messages[1] and fragment in messages[0], messages


def test_a_config_is_probed_once_per_process(monkeypatch):
    calls = []
    monkeypatch.setattr(checks, "check_runnable", calls.append)
    monkeypatch.setattr(checks, "_CHECKED", set())
    first = checks.checked_config(compose(["lr=0.123"]))
    again = checks.checked_config(compose(["lr=0.123"]))
    checks.checked_config(compose(["lr=0.124"]))
    assert first == again and len(calls) == 2


def _single_error(line: str, tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as e:
        cli.preflight([line, f"hydra.run.dir={tmp_path / 'one'}"])
    return str(e.value)


@pytest.mark.parametrize("bad", ["lr=-1", "lr=abc", "data.train_range=[1,-1]"])
def test_a_bad_value_among_64_good_ones_gets_the_single_runs_message(tmp_path, bad):
    key, _, value = bad.partition("=")
    good = [f"{0.01 + 0.001 * i:g}" for i in range(63)] if key == "lr" else [f"[-{1 + i / 100:g},{1 + i / 100:g}]" for i in range(63)]
    values = good[:40] + [value] + good[40:]
    with pytest.raises(ConfigError) as e:
        cli.preflight(["-m", f"{key}={','.join(values)}", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert str(e.value) == _single_error(bad, tmp_path)
    assert not (tmp_path / "sweep").exists()


def test_a_sweep_of_good_values_passes_and_a_mapping_value_starts_from_the_base(tmp_path):
    args = cli.preflight(["-m", "lr=0.05,0.1,0.05", "function.params={}", f"hydra.sweep.dir={tmp_path / 's'}"])
    assert "--multirun" in args


# ----------------------------------------------------------------------------- start-up and exit


def test_a_single_run_imports_no_matplotlib_before_it_draws(tmp_path):
    code = ("import sys, neuroscope.sweep, neuroscope.summary, neuroscope.checks; "
            "print('matplotlib' in sys.modules); from neuroscope.sweep import plot_sweep; print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "True"], out.stderr


@pytest.mark.slow
def test_the_quick_exit_still_leaves_every_file_whole(tmp_path):
    proc = run_cli([*FAST, "steps=60", "viz.format=mp4", "viz.frames=45", "viz.dpi=30", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "run"
    for name in (hist.METRICS_CSV, hist.SUMMARY_JSON, hist.HISTORY_NPZ, hist.DASHBOARD_PNG, hist.ANIMATION_MP4,
                 "model.pt", "checkpoint.pt", ".hydra/config.yaml"):
        assert (run / name).stat().st_size > 0, name
    summary = json.loads((run / hist.SUMMARY_JSON).read_text())
    assert summary["render"] == "done" and summary["environment"]["matplotlib"]
    assert len((run / hist.METRICS_CSV).read_text().splitlines()) == 61 + 1
    assert "dashboard:" in (run / "neuroscope.log").read_text()  # the log was flushed at exit
    assert len(_frames(run / hist.ANIMATION_MP4)) == 45
    assert not [p for p in run.iterdir() if "partial" in p.name]


CONFIG_SETS = [[], ["experiment=eos_sweep"], ["experiment=eos_sweep_2d"], ["experiment=pinn_conditioning"], ["experiment=eos_vs_flow"],
               ["loss=l1"], ["loss=heat"], ["loss=burgers"], ["optimizer=heavy_ball"], ["reference=flow"],
               ["function=poly"], ["function=sin_cos2d", "input_dim=2"], ["curvature.terms=true", "curvature.lambda_min=true", "curvature.k=3"]]


@pytest.mark.parametrize("overrides", CONFIG_SETS, ids=lambda o: " ".join(o) or "default")
def test_a_configs_plain_data_and_yaml_are_omegaconfs_structured_conversion(overrides):
    from omegaconf import OmegaConf

    from neuroscope.checkpoint import config_data, config_yaml
    from neuroscope.typed import to_config

    config = to_config(compose(overrides))
    node = OmegaConf.structured(config)
    expected = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    data = config_data(config)
    assert data == expected and list(data) == list(expected)
    assert json.dumps(data, sort_keys=True) == json.dumps(expected, sort_keys=True)  # the fingerprint's bytes
    assert config_yaml(config) == OmegaConf.to_yaml(node)


def test_a_config_made_in_python_converts_as_omegaconf_converts_it():
    """An int in a float field (Config(lr=1) from Python) is a float, as OmegaConf makes it; a
    value OmegaConf itself has to judge goes through OmegaConf."""
    import dataclasses

    from omegaconf import OmegaConf

    from neuroscope.checkpoint import config_data, plain_data
    from neuroscope.typed import to_config

    config = dataclasses.replace(to_config(compose([])), lr=1, diverge_above=10**6)
    expected = OmegaConf.to_container(OmegaConf.structured(config), resolve=True, enum_to_str=True)
    assert isinstance(config_data(config)["lr"], float) and config_data(config) == expected
    assert json.dumps(config_data(config), sort_keys=True) == json.dumps(expected, sort_keys=True)
    with pytest.raises(TypeError):
        plain_data({"x": Path("a")})


def _with_lr(run_dir: Path, lr: float) -> Path:
    summary = json.loads((run_dir / hist.SUMMARY_JSON).read_text())
    hist.write_summary(run_dir, {**summary, "lr": lr})
    return run_dir


def test_a_reused_figure_draws_each_run_as_a_figure_of_its_own_would(tmp_path):
    """render_many's workers draw each folder into the figure of the one before when the layout
    is the same (Dashboard.show_run); the oracle is each folder drawn alone into a new figure:
    the same pixels, whatever was drawn before (another lr, so another 2/lr line and limits; a
    diverged run; the PDE's error axis), and a run of another layout gets a figure of its own."""
    from neuroscope import train

    view = {"format": "none", "frames": 12, "fps": 10, "dpi": 40, "size": "[8.0, 6.0]"}
    folders = [_with_lr(write_run(tmp_path / "a", synthetic_history(seed=0), viz=view), 0.05),
               _with_lr(write_run(tmp_path / "b", synthetic_history(seed=0, diverge_at=250), viz=view, diverge_at=250), 0.2),
               _with_lr(write_run(tmp_path / "c", synthetic_history(seed=0), viz=view), 0.01)]
    for i, lr in enumerate((0.05, 0.3)):  # a PDE loss: the |u - u*| axis at the right of the fit
        cfg = compose(["loss=poisson1d", f"lr={lr}", "steps=30", "curvature.every=5", "progress=false",
                       *[f"viz.{k}={v}" for k, v in view.items()]])
        folders.append(train(cfg, out_dir=str(tmp_path / f"pde{i}")).run_dir)
    alone = []
    for d in folders:
        render_module._LAST.clear()
        render_module.render(d)
        alone.append(np.asarray(Image.open(d / hist.DASHBOARD_PNG).convert("RGB")))
    render_module._LAST.clear()
    figures = []
    for i in [0, 1, 2, 0, 3, 4, 3, 2]:
        render_module.render(folders[i], reuse=True)
        figures.append(render_module._LAST[0])
        assert np.array_equal(np.asarray(Image.open(folders[i] / hist.DASHBOARD_PNG).convert("RGB")), alone[i]), i
    assert len({id(f) for f in figures[:4]}) == 1  # the three 1D data runs share one figure
    assert figures[4] is not figures[3] and figures[5] is figures[4]  # the PDE runs another, shared
    assert figures[7] is not figures[6]


def test_render_workers_forked_after_this_process_drew_still_draw_text(tmp_path):
    """A forked render worker must not use the parent's FreeType fonts (cached mathtext parses
    of log-axis labels, the figure drawn last): drawing here first, then in two workers, leaves
    every folder drawn, with the pixels of a drawing of its own. (Without the fix, a folder at the
    default size fails in about one try of three: the two workers race on the shared fonts.)"""
    view = {"format": "none", "frames": 12, "fps": 10, "dpi": 100, "size": "[12.0, 9.0]"}
    dirs = [_with_lr(write_run(tmp_path / f"r{i}", synthetic_history(seed=i), viz=view), 0.02 * (i + 1)) for i in range(8)]
    render_module._LAST.clear()
    alone = []
    for d in dirs:
        render_module.render(d, reuse=True)  # this process has drawn text, and keeps a figure
        alone.append(np.asarray(Image.open(d / hist.DASHBOARD_PNG).convert("RGB")))
        (d / hist.DASHBOARD_PNG).unlink()
    assert render_module.render_many(dirs, workers=2) == ["done"] * len(dirs)
    for d, pixels in zip(dirs, alone):
        assert np.array_equal(np.asarray(Image.open(d / hist.DASHBOARD_PNG).convert("RGB")), pixels)

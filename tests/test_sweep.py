"""Sweep summaries: summary.csv and sweep.png for a multirun, written when it ends (Hydra
callback) and by ``neuroscope-summary``, with diverged, failed and missing jobs reported;
the joblib and submitit_local launchers with ``device.threads`` in effect in every job."""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hydra.types import RunMode
from matplotlib.image import imread
from omegaconf import OmegaConf

from neuroscope import sweep as sw
from neuroscope.viz.style import COLORS

from .conftest import run_cli

# Tiny jobs: a few steps, sharpness every 5, no video, no progress bar.
TINY = ["steps=30", "curvature.every=5", "viz.format=none", "progress=false"]
LR_SWEEP = ["-m", "lr=0.05,0.1,50", *TINY]  # lr=50 diverges within a few steps
LR_JOBS = ["0_lr=0.05", "1_lr=0.1", "2_lr=50"]
STEP_PANELS = ["sharpness λ_max (dashed: 2/lr, same colour)", "lr · sharpness (all jobs on one scale)", "training loss"]
# Without device.threads, every job would then run 2 torch threads (joblib's workers keep a
# thread count the parent sets): 1 in a job's summary shows that device.threads=1 took effect.
THREADS_2 = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}


def _sweep_dir(root: Path) -> Path:
    dirs = sorted(p.parent for p in (root / "outputs" / "multirun").glob("*/*/multirun.yaml"))
    assert len(dirs) == 1, f"expected one sweep folder, found {dirs}"
    return dirs[0]


def _rows(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def _summary_cli(sweep_dir: Path) -> subprocess.CompletedProcess:
    """``neuroscope-summary SWEEP_DIR`` as a user types it (the console script next to this python)."""
    script = Path(sys.executable).parent / "neuroscope-summary"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "neuroscope.sweep"]
    return subprocess.run([*cmd, str(sweep_dir)], capture_output=True, text=True, timeout=120)


def _check_lr_sweep(sweep_dir: Path) -> list[dict[str, str]]:
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) == [
        "0_lr=0.05", "1_lr=0.1", "2_lr=50"]
    rows = _rows(sweep_dir)
    assert [(r["lr"], r["status"]) for r in rows] == [("0.05", "finished"), ("0.1", "finished"), ("50", "diverged")]
    finished = rows[0]
    assert float(finished["final_loss"]) < 1 and float(finished["max_sharpness"]) > 0
    assert 0 < float(finished["late_sharpness_over_edge"]) < 1  # 30 steps at lr 0.05: far below 2/lr
    assert int(finished["steps_done"]) == 30 and float(finished["wall_seconds"]) > 0
    assert int(rows[2]["steps_done"]) < 30 and "diverged at step" in rows[2]["note"]
    # every job was recorded as it started, also by a launcher's worker processes
    assert {n: (j.folder, j.overrides[0]) for n, j in sw.read_launches(sweep_dir).items()} == {
        0: ("0_lr=0.05", "lr=0.05"), 1: ("1_lr=0.1", "lr=0.1"), 2: ("2_lr=50", "lr=50")}
    (row,) = _figure_rows(sweep_dir)  # one group of jobs: one page of four panels
    assert list(row) == [*STEP_PANELS, "final errors against lr"]
    sharpness, normalized, loss, errors = row.values()
    for ax in (sharpness, normalized, loss):
        assert {name: line.get_linestyle() for name, line in _job_curves(ax).items()} == dict.fromkeys(LR_JOBS, "-")
        assert _diverged_marks(ax) == [int(rows[2]["steps_done"])]  # where the lr=50 curve stops
    assert all(len(line.get_xdata()) > 1 for line in _job_curves(loss).values())  # loss at every step
    assert _dashed_levels(sharpness) == pytest.approx([0.04, 20, 40])  # each job's 2/lr
    assert _dashed_levels(normalized) == [2.0]
    assert _error_points(errors) == {"test": [0.05, 0.1], "generalization": [0.05, 0.1]}  # diverged: no point
    assert _diverged_marks(errors) == [50] and "diverged" in [t.get_text() for t in errors.texts]
    return rows


def _figure_rows(sweep_dir: Path) -> list[dict[str, object]]:
    """The figure sweep.png holds, drawn again from the sweep folder: a dict per row of panels,
    title -> axes; sweep.png must have that figure's size in pixels."""
    fig = sw.draw_sweep(sw.load_sweep(sweep_dir))
    width, height = fig.get_size_inches() * 100
    assert imread(sweep_dir / "sweep.png").shape[:2] == (round(height), round(width))
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert len(axes) % 4 == 0
    return [{ax.get_title(): ax for ax in axes[i:i + 4]} for i in range(0, len(axes), 4)]


def _job_curves(ax) -> dict[str, object]:
    """A panel's per-job curves, labelled by job folder."""
    return {ln.get_label(): ln for ln in ax.lines if not ln.get_label().startswith("_")}


def _dashed_levels(ax) -> list[float]:
    """The heights of a panel's dashed horizontal lines, sorted."""
    return sorted(float(ln.get_ydata()[0]) for ln in ax.lines
                  if ln.get_linestyle() == "--" and len(set(ln.get_ydata())) == 1 and ln.get_label().startswith("_"))


def _diverged_marks(ax) -> list[float]:
    """The x positions of the panel's diverged marks, in the diverged colour."""
    return sorted(float(ln.get_xdata()[0]) for ln in ax.lines if ln.get_marker() == "x" and ln.get_color() == COLORS["diverged"])


def _error_points(ax) -> dict[str, list[float]]:
    """The errors panel's lines, by the first word of their label: their x values."""
    return {ln.get_label().split()[0]: [float(x) for x in ln.get_xdata()] for ln in ax.lines
            if not ln.get_label().startswith("_")}


def _threads(job_dir: Path) -> int:
    return json.loads((job_dir / "summary.json").read_text())["environment"]["threads"]


# --------------------------------------------------------------------------------------------
# End to end, as a user types it


@pytest.fixture(scope="module")
def lr_sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("lr_sweep")
    proc = run_cli([*LR_SWEEP, "device.threads=1"], root, env_extra=THREADS_2)
    return _sweep_dir(root) if proc.returncode == 0 else root, proc


@pytest.mark.slow
def test_sweep_with_a_diverging_lr_exits_zero_and_writes_the_summary(lr_sweep):
    sweep_dir, proc = lr_sweep
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_lr_sweep(sweep_dir)
    assert "sweep summary (3 jobs: 2 finished, 1 diverged)" in proc.stdout + proc.stderr
    assert all(_threads(sweep_dir / j) == 1 for j in ("0_lr=0.05", "1_lr=0.1"))


@pytest.mark.slow
def test_summary_command_reports_deleted_and_unfinished_jobs(lr_sweep, tmp_path):
    sweep_dir, proc = lr_sweep
    assert proc.returncode == 0, proc.stdout + proc.stderr
    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy)
    for name in ("summary.csv", "sweep.png"):
        (copy / name).unlink()
    shutil.rmtree(copy / "1_lr=0.1")  # deleted mid-way
    (copy / "0_lr=0.05" / "summary.json").unlink()  # killed before it wrote its summary
    out = _summary_cli(copy)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = _rows(copy)
    assert [(r["lr"], r["status"]) for r in rows] == [("0.05", "failed"), ("0.1", "missing"), ("50", "diverged")]
    assert int(rows[0]["steps_done"]) == 30 and float(rows[0]["final_loss"]) < 1  # from metrics.csv
    assert rows[1]["final_loss"] == "nan" and rows[1]["note"] == "job folder not found"
    assert "missing job 1_lr=0.1" in out.stdout and "failed job 0_lr=0.05" in out.stdout
    fig = sw.draw_sweep(sw.load_sweep(copy))
    assert "missing (no job folder): 1_lr=0.1" in fig.get_suptitle()
    (row,) = _figure_rows(copy)
    sharpness, _, _, errors = row.values()
    curves = _job_curves(sharpness)  # no curve for the deleted job; the killed one's dotted
    assert {name: line.get_linestyle() for name, line in curves.items()} == {"0_lr=0.05": ":", "2_lr=50": "-"}
    assert _dashed_levels(sharpness) == pytest.approx([0.04, 40])
    assert {"failed", "missing", "diverged"} <= {t.get_text() for t in errors.texts}


def test_summary_command_rejects_a_folder_that_is_no_sweep(tmp_path):
    (tmp_path / "a" / "multirun.yaml").parent.mkdir()
    (tmp_path / "a" / "multirun.yaml").write_text("hydra: {}\n")
    out = _summary_cli(tmp_path)
    assert out.returncode == 2
    assert "not a sweep folder" in out.stderr and str(tmp_path / "a") in out.stderr


@pytest.mark.slow
def test_two_key_grid_gives_a_row_per_job_and_a_figure(tmp_path):
    proc = run_cli(["-m", "lr=0.05,0.1", "model.width=4,8", "steps=20", *TINY[1:], "device.threads=1"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sweep_dir = _sweep_dir(tmp_path)
    rows = _rows(sweep_dir)
    assert list(rows[0])[:3] == ["lr", "model.width", "status"]
    assert [(r["lr"], r["model.width"]) for r in rows] == [("0.05", "4"), ("0.05", "8"), ("0.1", "4"), ("0.1", "8")]
    assert {r["status"] for r in rows} == {"finished"}
    assert len({r["final_loss"] for r in rows}) == 4  # four different runs, not one repeated
    fig = sw.draw_sweep(sw.load_sweep(sweep_dir))
    assert [sub.get_suptitle() for sub in fig.subfigs] == ["model.width = 4", "model.width = 8"]  # a row per width
    rows_jobs = (["0_lr=0.05,model.width=4", "2_lr=0.1,model.width=4"], ["1_lr=0.05,model.width=8", "3_lr=0.1,model.width=8"])
    for row, jobs in zip(_figure_rows(sweep_dir), rows_jobs, strict=True):
        assert list(row) == [*STEP_PANELS, "final errors against lr"]
        for ax in list(row.values())[:3]:
            assert sorted(_job_curves(ax)) == jobs
        assert _error_points(list(row.values())[3]) == {"test": [0.05, 0.1], "generalization": [0.05, 0.1]}


@pytest.mark.slow
def test_failed_job_does_not_lose_the_summary(tmp_path):
    """A job that raises fails the multirun (exit 1), but the summary is still written on the way out."""
    (tmp_path / "flaky_targets.py").write_text(textwrap.dedent("""
        import torch
        def sin_or_fail(x, fail=0):
            if fail and x.shape[0] > 16:  # passes the few-point probe of the preflight, fails on the data
                raise RuntimeError("this target fails on purpose")
            return torch.sin(x).sum(dim=1)
    """))
    args = ["-m", "function=custom", "function._target_=flaky_targets.sin_or_fail", "+function.params.fail=0,1",
            "steps=10", *TINY[1:], "device.threads=1"]
    proc = run_cli(args, tmp_path, env_extra={"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    assert proc.returncode != 0
    assert "this target fails on purpose" in proc.stdout + proc.stderr
    rows = _rows(_sweep_dir(tmp_path))
    assert [(r["function.params.fail"], r["status"]) for r in rows] == [("0", "finished"), ("1", "failed")]
    assert "no summary.json" in rows[1]["note"]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
                    reason="hydra-joblib-launcher is not installed (pip install '.[joblib]')")
def test_joblib_launcher_sweep_with_threads_per_job(tmp_path):
    proc = run_cli([*LR_SWEEP, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "device.threads=1"], tmp_path,
                   env_extra=THREADS_2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sweep_dir = _sweep_dir(tmp_path)
    _check_lr_sweep(sweep_dir)
    assert "Joblib" in proc.stdout + proc.stderr  # the launcher really was joblib
    assert [_threads(sweep_dir / j) for j in ("0_lr=0.05", "1_lr=0.1")] == [1, 1]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
                    reason="hydra-submitit-launcher is not installed (pip install '.[submitit]')")
def test_submitit_local_launcher_sweep_with_threads_per_job(tmp_path):
    proc = run_cli([*LR_SWEEP, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "device.threads=1"],
                   tmp_path, env_extra=THREADS_2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sweep_dir = _sweep_dir(tmp_path)
    _check_lr_sweep(sweep_dir)
    assert (sweep_dir / ".submitit").is_dir()  # the launcher really was submitit
    assert [_threads(sweep_dir / j) for j in ("0_lr=0.05", "1_lr=0.1")] == [1, 1]


def test_eos_sweep_preset_sweeps_lr_by_itself():
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module("neuroscope.conf", version_base="1.3"):
        for preset, swept in (("eos_sweep", {"lr"}), ("eos_sweep_2d", {"lr", "model.width"})):
            cfg = compose("config", overrides=[f"experiment={preset}"], return_hydra_config=True)
            assert set(cfg.hydra.sweeper.params) == swept
            assert cfg.device.threads == 1 and cfg.progress is False
            assert cfg.hydra.callbacks.sweep_summary._target_ == "neuroscope.sweep.SweepSummary"
            lrs = [float(v) for v in str(cfg.hydra.sweeper.params.lr).split(",")]
            assert len(lrs) >= 3 and all(2 / lr < 50 for lr in lrs)  # edges the net's sharpness reaches
    GlobalHydra.instance().clear()


# --------------------------------------------------------------------------------------------
# The summary logic on synthetic job folders (fast)


def _job_config(sweep_dir: Path, name: str, overrides: list[str], mode: RunMode = RunMode.MULTIRUN):
    """The config Hydra hands a callback's on_job_start, as far as SweepSummary reads it."""
    return OmegaConf.create({"lr": 0.1, "hydra": {
        "mode": mode, "sweep": {"dir": str(sweep_dir)}, "runtime": {"output_dir": str(sweep_dir / name)},
        "job": {"num": int(name.split("_")[0])}, "overrides": {"task": overrides}}})


def _launch(sweep_dir: Path, name: str, overrides: list[str]) -> None:
    """What Hydra does as a job starts: make its folder and tell the callbacks."""
    (sweep_dir / name).mkdir(parents=True)
    sw.SweepSummary().on_job_start(_job_config(sweep_dir, name, overrides), task_function=lambda cfg: None)


def _write_job(sweep_dir: Path, name: str, overrides: list[str], *, lr: float, status: str | None, steps: int = 100,
               sharp: float = 10.0, loss_end: float = 0.01) -> None:
    _launch(sweep_dir, name, overrides)
    job = sweep_dir / name
    (job / ".hydra").mkdir()
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (job / ".hydra" / "config.yaml").write_text(f"lr: {lr}\nsteps: {steps}\n")
    done = steps if status != "diverged" else steps // 2
    step = np.arange(done + 1)
    loss = np.geomspace(1.0, loss_end, done + 1)
    with open(job / "metrics.csv", "w") as f:
        f.write("step,loss,test_error,gen_error,sharpness\n")
        for t, v in zip(step.tolist(), loss.tolist()):
            s = repr(sharp * (0.5 + t / done)) if t % 10 == 0 else ""  # measured every 10 steps
            f.write(f"{t},{v!r},{2 * v!r},{10 * v!r},{s}\n")
    if status is not None:
        summary = {"status": status, "lr": lr, "steps": steps, "steps_done": done, "wall_seconds": 1.5,
                   "final": {"loss": loss_end, "test_error": 2 * loss_end, "gen_error": 10 * loss_end, "sharpness": "nan"},
                   "max_sharpness": sharp * 1.5, "late_sharpness_over_edge": 0.9}
        (job / "summary.json").write_text(json.dumps(summary))


def _write_multirun(sweep_dir: Path, task: list[str], params: dict[str, str] | None = None) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    params_yaml = "".join(f"      {k}: {v}\n" for k, v in (params or {}).items()) or "      {}\n"
    (sweep_dir / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    _target_: hydra._internal.core_plugins.basic_sweeper.BasicSweeper\n"
        f"    max_batch_size: null\n    params:\n{params_yaml}"
        "  overrides:\n    task:\n" + "".join(f"    - {t}\n" for t in task) + "lr: 0.1\n"
    )


def test_statuses_and_missing_jobs_come_from_the_jobs_launched(tmp_path):
    _write_multirun(tmp_path, ["lr=0.1,0.2,0.3,0.4", "steps=100"])
    _write_job(tmp_path, "0_lr=0.1", ["lr=0.1", "steps=100"], lr=0.1, status="finished")
    _write_job(tmp_path, "1_lr=0.2", ["lr=0.2", "steps=100"], lr=0.2, status="diverged")
    _launch(tmp_path, "2_lr=0.3", ["lr=0.3", "steps=100"])
    (tmp_path / "2_lr=0.3").rmdir()  # deleted after it started
    _write_job(tmp_path, "3_lr=0.4", ["lr=0.4", "steps=100"], lr=0.4, status=None)  # no summary.json
    sweep = sw.load_sweep(tmp_path)
    assert sweep.swept_keys == ["lr"] and sweep.fixed == ["steps=100"]
    assert [(j.num, j.overrides["lr"], j.status) for j in sweep.jobs] == [
        (0, "0.1", "finished"), (1, "0.2", "diverged"), (2, "0.3", "missing"), (3, "0.4", "failed")]
    failed = sweep.jobs[3]
    assert failed.steps_done == 100 and failed.steps == 100 and failed.lr == 0.4
    assert failed.values["final_loss"] == pytest.approx(0.01)
    assert failed.values["max_sharpness"] == pytest.approx(15.0)
    # late window: steps >= 80, measured at 80, 90, 100: sharpness 13, 14, 15; mean 14, times lr/2
    assert failed.values["late_sharpness_over_edge"] == pytest.approx(14 * 0.4 / 2)
    assert sweep.jobs[2].lr == 0.3 and sweep.jobs[2].name == "2_lr=0.3"


def test_table_has_one_column_per_swept_key_and_a_row_per_job(tmp_path):
    _write_multirun(tmp_path, ["model.width=8,16", "steps=100"], params={"lr": "0.1,0.2"})
    for num, (lr, width) in enumerate([(0.1, 8), (0.1, 16), (0.2, 8), (0.2, 16)]):
        _write_job(tmp_path, f"{num}_lr={lr},model.width={width}", [f"lr={lr}", f"model.width={width}", "steps=100"],
                   lr=lr, status="finished", sharp=5.0 * (num + 1))
    result = sw.summarize(tmp_path)
    rows = _rows(tmp_path)
    assert list(rows[0])[:4] == ["lr", "model.width", "status", "final_loss"]
    assert "steps" in rows[0] and list(rows[0]).count("lr") == 1
    assert [(r["lr"], r["model.width"]) for r in rows] == [("0.1", "8"), ("0.1", "16"), ("0.2", "8"), ("0.2", "16")]
    assert [float(r["max_sharpness"]) for r in rows] == [7.5, 15.0, 22.5, 30.0]
    assert result.png == tmp_path / "sweep.png"
    rows_jobs = (["0_lr=0.1,model.width=8", "2_lr=0.2,model.width=8"], ["1_lr=0.1,model.width=16", "3_lr=0.2,model.width=16"])
    for row, jobs in zip(_figure_rows(tmp_path), rows_jobs, strict=True):  # a row of panels per width, lr along each
        sharpness = row["sharpness λ_max (dashed: 2/lr, same colour)"]
        assert sorted(_job_curves(sharpness)) == jobs
        assert _dashed_levels(sharpness) == pytest.approx([10, 20]) and not _diverged_marks(sharpness)
        assert _error_points(row["final errors against lr"]) == {"test": [0.1, 0.2], "generalization": [0.1, 0.2]}


def test_a_key_given_on_the_command_line_replaces_the_presets_sweep(tmp_path):
    _write_multirun(tmp_path, ["experiment=eos_sweep", "lr=0.05"], params={"lr": "0.1,0.2"})
    assert sw.swept_keys(OmegaConf.load(tmp_path / "multirun.yaml")) == []
    _write_multirun(tmp_path, ["experiment=eos_sweep", "+function.params.fail=0,1"], params={"lr": "0.1,0.2"})
    assert sw.swept_keys(OmegaConf.load(tmp_path / "multirun.yaml")) == ["lr", "function.params.fail"]


def test_the_callback_records_multirun_jobs_only_and_never_raises(tmp_path, caplog):
    callback = sw.SweepSummary()
    callback.on_job_start(_job_config(tmp_path, "0", ["lr=0.1"], mode=RunMode.RUN), task_function=lambda cfg: None)
    assert not (tmp_path / ".jobs").exists()  # a single run is no sweep
    _launch(tmp_path, "3_lr=0.2,seed=1", ["lr=0.2", "+seed=1"])
    assert sw.read_launches(tmp_path) == {3: sw.Launch(num=3, folder="3_lr=0.2,seed=1", overrides=["lr=0.2", "+seed=1"])}
    (tmp_path / "file").write_text("")  # a sweep folder that cannot be written: a warning, not an error
    callback.on_job_start(_job_config(tmp_path / "file", "0", ["lr=0.1"]), task_function=lambda cfg: None)
    assert "cannot record the start of this job" in caplog.text


def test_without_multirun_yaml_the_varying_keys_are_the_swept_ones(tmp_path):
    for num, seed in enumerate((0, 1, 2)):
        _write_job(tmp_path, f"{num}_seed={seed}", [f"seed={seed}", "lr=0.1"], lr=0.1, status="finished")
    sweep = sw.load_sweep(tmp_path)
    assert sweep.swept_keys == ["seed"] and sweep.fixed == ["lr=0.1"] and not sweep.missing
    sw.plot_sweep(sweep, tmp_path / "sweep.png")  # a non-lr key on the x axis draws too
    (row,) = _figure_rows(tmp_path)
    assert sorted(_job_curves(row["training loss"])) == ["0_seed=0", "1_seed=1", "2_seed=2"]
    assert _dashed_levels(row["sharpness λ_max (dashed: 2/lr, same colour)"]) == pytest.approx([20, 20, 20])
    errors = row["final errors against seed"]
    assert [t.get_text() for t in errors.get_xticklabels()] == ["0", "1", "2"]
    assert _error_points(errors) == {"test": [0, 1, 2], "generalization": [0, 1, 2]}


def test_objective_value_for_optimizing_sweepers():
    assert sw.objective_value({"status": "finished", "final": {"gen_error": 0.25}}) == 0.25
    assert sw.objective_value({"status": "finished", "final": {"gen_error": "nan"}}) == sw.DIVERGED_OBJECTIVE
    assert sw.objective_value({"status": "diverged", "final": {"gen_error": 3.0}}) == sw.DIVERGED_OBJECTIVE
    assert sw.objective_value({"status": "finished", "final": {"test_error": 0.5}}, "test_error") == 0.5
    # Optuna counts a NaN or inf objective as a failed trial: a bad run must get a finite number
    bad = [{"status": "finished", "final": {"gen_error": "inf"}}, {"status": "finished", "final": {}}, {},
           {"status": "diverged", "final": {"gen_error": 0.1}}]
    assert all(math.isfinite(sw.objective_value(b)) and sw.objective_value(b) > 1e6 for b in bad)
    assert sw.objective_value(bad[0], penalty=99.0) == 99.0


def test_a_jobs_yaml_read_as_plain_data_selects_what_omegaconf_selects(tmp_path):
    """The sweep reader reads each job's YAML as plain data (libyaml) and selects from it; the
    oracle is OmegaConf's load and select: floats without a dot, interpolations, absent keys."""
    from omegaconf import OmegaConf

    from neuroscope.sweep.jobs import _load_yaml, _select

    path = tmp_path / "config.yaml"
    path.write_text("steps: 100\nlr: 1e-3\nbase: 0.5\nname: ${function.name}\nfunction:\n  name: sin\n"
                    "optimizer:\n  name: heavy_ball\n  momentum: ${base}\nquoted: '1e-3'\nflags: [1, 2.5e+2]\n")
    plain, ours = _load_yaml(path, plain=True), OmegaConf.load(path)
    for key in ("steps", "lr", "name", "function.name", "quoted", "nothing", "function.nothing", "base"):
        assert _select(plain, key) == OmegaConf.select(ours, key, default=None), key
    assert _select(plain, "optimizer") == OmegaConf.to_container(OmegaConf.select(ours, "optimizer"), resolve=True)
    assert plain["flags"] == [1, 250.0] and isinstance(plain["lr"], float)
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    assert _load_yaml(tmp_path / "bad.yaml", plain=True) is None and _load_yaml(tmp_path / "absent.yaml", plain=True) is None

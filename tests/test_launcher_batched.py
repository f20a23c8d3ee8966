"""``hydra/launcher=batched``: found by Hydra's plugin discovery, its jobs grouped into
ensembles (by width, capped by max_batch), each job folder as the basic launcher leaves it,
a bad job failing alone, the sweep summary and Optuna's value, and a signalled sweep.

The launcher's pieces run in process through Hydra's public API (a config loader from
GlobalHydra, a HydraContext with recording callbacks); two slow tests run the CLI."""
from __future__ import annotations

import copy
import csv
import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobStatus
from hydra.types import HydraContext, RunMode
from omegaconf import OmegaConf, open_dict

from neuroscope import rundir as hist
from neuroscope import ensemble as ensemble_mod
from neuroscope import run as run_mod
from neuroscope.sweep import DIVERGED_OBJECTIVE, objective_value, summarize
from neuroscope.sweep import batched

from .conftest import run_cli
from .test_ensemble import CURVATURE, SMALL

TINY = ["steps=12", "curvature.every=4", "viz.format=none", "progress=false", "device.threads=1"]
RUN_FILES = [".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "neuroscope.log", hist.METRICS_CSV,
             hist.SUMMARY_JSON, hist.MODEL_PT, hist.CHECKPOINT_PT, hist.HISTORY_NPZ, hist.DASHBOARD_PNG]


class Recorder:
    """Stands for Hydra's callbacks object: records on_job_start / on_job_end, and runs
    neuroscope's own sweep callback's on_job_start (its launch records)."""

    def __init__(self) -> None:
        from neuroscope.sweep import SweepSummary

        self.events: list[tuple[str, int, object]] = []
        self.sweep = SweepSummary(plot=False)

    def on_job_start(self, config, task_function, **kwargs) -> None:
        self.events.append(("start", int(config.hydra.job.num), str(config.hydra.runtime.output_dir)))
        self.sweep.on_job_start(config, task_function=task_function)

    def on_job_end(self, config, job_return, **kwargs) -> None:
        self.events.append(("end", int(config.hydra.job.num), job_return.status))


@pytest.fixture
def launch(tmp_path, monkeypatch):
    """``launch(jobs, max_batch=0)``: the batched launcher on these jobs' overrides, in
    process; returns (JobReturns, Recorder, sweep dir). Restores logging and HydraConfig."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    monkeypatch.chdir(tmp_path)

    def go(jobs: list[list[str]], max_batch: int = 0, common: tuple[str, ...] = tuple(TINY)):
        from hydra_plugins.neuroscope_batched.batched_launcher import BatchedLauncher

        sweep_dir = tmp_path / "sweep"
        GlobalHydra.instance().clear()
        with initialize_config_module("neuroscope.conf", version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            fixed = ",".join(o.split("=")[0] for o in common)  # folders named by the swept keys, as the CLI's preflight does
            base = loader.load_configuration("config", overrides=[
                f"hydra.sweep.dir={sweep_dir}", "hydra/launcher=batched", f"hydra.launcher.max_batch={max_batch}",
                f"hydra.job.config.override_dirname.exclude_keys=[{fixed}]"], run_mode=RunMode.MULTIRUN)
            recorder = Recorder()
            launcher = BatchedLauncher(max_batch=max_batch)
            launcher.setup(hydra_context=HydraContext(config_loader=loader, callbacks=recorder), task_function=lambda c: None,
                           config=base)
            rets = launcher.launch([[*common, *j] for j in jobs], initial_job_idx=0)
        return rets, recorder, sweep_dir

    yield go
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)
    HydraConfig.instance().cfg = None
    GlobalHydra.instance().clear()


@pytest.fixture
def groups(monkeypatch):
    """Records the groups handed to ``ensemble.train_group`` (a recording train_group that
    runs each member with run.run)."""
    calls: list[list[Path]] = []
    real = ensemble_mod.train_group

    def train_group(cfgs, run_dirs, *, render=True, progress=None, overrides=(), configs_written=False):
        calls.append([Path(d).name for d in run_dirs])
        return real(cfgs, run_dirs, render=render, progress=progress, overrides=overrides, configs_written=configs_written)

    monkeypatch.setattr(ensemble_mod, "train_group", train_group)
    return calls


def test_plugin_is_found_by_hydra_discovery_in_a_fresh_interpreter(tmp_path):
    code = ("import neuroscope; from hydra.core.plugins import Plugins; from hydra.plugins.launcher import Launcher; "
            "from hydra.core.config_store import ConfigStore; "
            "print(sorted(c.__name__ for c in Plugins.instance().discover(Launcher))); "
            "print('batched.yaml' in ConfigStore.instance().list('hydra/launcher'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    names, stored = out.stdout.splitlines()
    assert "BatchedLauncher" in names and stored == "True"


def test_help_lists_the_batched_launcher():
    from neuroscope import compose

    footer = compose(return_hydra_config=True).hydra.help.footer
    assert "hydra/launcher=batched" in footer and "max_batch" in footer


def test_jobs_split_by_width_and_max_batch_each_folder_complete_and_callbacks_in_order(launch, groups):
    jobs = [["lr=0.05", "model.width=8"], ["lr=0.1", "model.width=8"], ["lr=0.05", "model.width=4"],
            ["lr=0.2", "model.width=8"], ["lr=0.1", "model.width=4"]]
    rets, recorder, sweep_dir = launch(jobs, max_batch=2)
    # width 8: jobs 0,1,3 capped at 2 per group -> [0,1], [3]; width 4: [2,4]
    assert [[n.split("_")[0] for n in g] for g in groups] == [["0", "1"], ["3"], ["2", "4"]]
    assert [int(r.hydra_cfg.hydra.job.num) for r in rets] == [0, 1, 2, 3, 4]  # one JobReturn per job, in job order
    assert all(r.status is JobStatus.COMPLETED for r in rets)
    for ret, job in zip(rets, jobs):
        folder = Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
        assert folder == sweep_dir / f"{ret.hydra_cfg.hydra.job.num}_{','.join(sorted(job))}"
        assert all((folder / f).exists() for f in RUN_FILES), sorted(p.name for p in folder.iterdir())
        assert OmegaConf.load(folder / ".hydra/overrides.yaml") == [*TINY, *job] == ret.overrides
        saved = OmegaConf.load(folder / ".hydra/config.yaml")
        assert (folder / ".hydra/config.yaml").read_text() == OmegaConf.to_yaml(ret.cfg) and saved.lr == float(job[0].split("=")[1]) and "hydra" not in saved
        assert OmegaConf.load(folder / ".hydra/hydra.yaml").hydra.job.num == ret.hydra_cfg.hydra.job.num
        summary = json.loads((folder / hist.SUMMARY_JSON).read_text())
        assert ret.return_value == objective_value(summary)  # what the task function returns (Optuna)
        log_text = (folder / "neuroscope.log").read_text()
        assert f"{folder}: " in log_text and "finished after 12 steps" in log_text
        others = [Path(str(r.hydra_cfg.hydra.runtime.output_dir)) for r in rets if r is not ret]
        assert not any(f"{o}: " in log_text for o in others)  # only this member's lines
    # on_job_start of every member before its group trains, on_job_end after, each job once
    assert sorted(n for e, n, _ in recorder.events if e == "start") == [0, 1, 2, 3, 4]
    assert [e for e in recorder.events if e[0] == "end"] == [("end", n, JobStatus.COMPLETED) for n in (0, 1, 3, 2, 4)]
    result = summarize(sweep_dir, plot=True)  # the sweep callback's summary from these folders
    rows = list(csv.DictReader(open(result.csv, newline="")))
    assert [r["status"] for r in rows] == ["finished"] * 5 and result.png.exists()


def test_a_job_composed_from_another_jobs_config_equals_hydras_composition(launch, monkeypatch):
    """The Composer composes once per set of groups and keys and patches plain values in; the
    oracle is Hydra's own composition of each job (load_sweep_config)."""
    composed = []
    jobs = [["lr=0.05", "model.width=8", "function=poly"], ["lr=0.2", "model.width=16", "function=poly"],
            ["lr=0.1", "model.width=16", "function=sin"], ["lr=0.3", "model.width=4", "function=sin"]]
    monkeypatch.setattr(batched, "_run_group", lambda launcher, group: composed.extend(group))
    patched, real = [], batched.Composer._patched
    monkeypatch.setattr(batched.Composer, "_patched", staticmethod(lambda t, p: patched.append(p) or real(t, p)))
    launch(jobs, common=("steps=12", "viz.format=none"))
    assert [j.num for j in composed] == [0, 1, 2, 3]
    assert len(patched) == 2  # jobs 1 and 3 came from jobs 0 and 2, not from a composition of their own
    with initialize_config_module("neuroscope.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for job, overrides in zip(composed, jobs):
            base = loader.load_configuration("config", overrides=[f"hydra.sweep.dir={job.config.hydra.sweep.dir}",
                "hydra/launcher=batched", "hydra.launcher.max_batch=0",
                "hydra.job.config.override_dirname.exclude_keys=[steps,viz.format]"], run_mode=RunMode.MULTIRUN)
            hydra_own = loader.load_sweep_config(base, ["steps=12", "viz.format=none", *overrides])
            ours = copy.deepcopy(job.config)
            with open_dict(hydra_own):
                hydra_own.hydra.job.num = hydra_own.hydra.job.id = job.num
                hydra_own.hydra.runtime.output_dir = ours.hydra.runtime.output_dir
            assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(hydra_own)
    assert [Path(str(j.config.hydra.runtime.output_dir)).name for j in composed] == [
        "0_function=poly,lr=0.05,model.width=8", "1_function=poly,lr=0.2,model.width=16",
        "2_function=sin,lr=0.1,model.width=16", "3_function=sin,lr=0.3,model.width=4"]


def test_the_sweepers_check_of_each_job_is_the_launchers_one_composition(tmp_path, monkeypatch):
    """A sweeper checks that every job composes (``validate_batch_is_legal``: the context's
    ``load_sweep_config`` per job) before it launches them: through the launcher's Composer,
    so that 6 lr jobs cost Hydra one composition, not 6 to check and more to run, and the
    launcher runs exactly the configs the check composed."""
    from hydra.plugins.sweeper import Sweeper

    from hydra_plugins.neuroscope_batched.batched_launcher import BatchedLauncher

    monkeypatch.chdir(tmp_path)
    ran = []
    monkeypatch.setattr(batched, "_run_group", lambda launcher, group: ran.extend(group))
    jobs = [[*TINY, f"lr={0.02 * (i + 1)}"] for i in range(6)]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("neuroscope.conf", version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            base = loader.load_configuration("config", overrides=[f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra/launcher=batched"],
                                             run_mode=RunMode.MULTIRUN)
            hydra_composed = []
            real = type(loader).load_sweep_config
            monkeypatch.setattr(type(loader), "load_sweep_config",
                                lambda self, master, overrides: hydra_composed.append(list(overrides)) or real(self, master, overrides))
            context = HydraContext(config_loader=loader, callbacks=Recorder())
            launcher = BatchedLauncher()
            launcher.setup(hydra_context=context, task_function=lambda c: None, config=base)

            class Checks(Sweeper):  # the public base class's own check, as every sweeper runs it
                def setup(self, **kwargs): ...
                def sweep(self, arguments): ...

            sweeper = Checks()
            sweeper.hydra_context, sweeper.config = context, base
            sweeper.validate_batch_is_legal(jobs)
            checked = {tuple(o): batched.composer_of(launcher).composed[tuple(o)][0] for o in jobs}
            launcher.launch(jobs, initial_job_idx=0)
            hydra_own = real(loader, base, jobs[3])
    finally:
        HydraConfig.instance().cfg = None
        GlobalHydra.instance().clear()
    assert hydra_composed == [jobs[0]]  # the others were patched from it
    assert [j.config for j in ran] == [checked[tuple(o)] for o in jobs]  # the checked configs are the ones run
    assert [j.config.lr for j in ran] == [0.02 * (i + 1) for i in range(6)]
    with open_dict(hydra_own):
        del hydra_own["hydra"]
    assert OmegaConf.to_yaml(ran[3].task_cfg) == OmegaConf.to_yaml(hydra_own)


def test_a_bad_job_fails_alone_with_its_error_in_its_log_and_the_sweep_exits_2(launch, caplog):
    with pytest.raises(SystemExit) as exit_info:
        launch([["lr=0.05"], ["lr=-1"], ["lr=0.1"]])
    assert exit_info.value.code == 2
    sweep_dir = Path("sweep").absolute()
    bad = sweep_dir / "1_lr=-1"
    assert (bad / ".hydra/overrides.yaml").exists() and not (bad / hist.SUMMARY_JSON).exists()
    error = (bad / "neuroscope.log").read_text()
    assert "lr=-1" in error and "Traceback" not in error and len(error.strip().splitlines()) == 1
    for good in ("0_lr=0.05", "2_lr=0.1"):
        assert json.loads((sweep_dir / good / hist.SUMMARY_JSON).read_text())["status"] == "finished"
        assert "lr=-1" not in (sweep_dir / good / "neuroscope.log").read_text()
    rows = list(csv.DictReader(open(summarize(sweep_dir, plot=False).csv, newline="")))
    assert [r["status"] for r in rows] == ["finished", "failed", "finished"]


def test_a_diverged_member_returns_the_penalty_and_the_others_their_gen_error(launch):
    rets, _, _ = launch([["lr=0.05"], ["lr=50"]])
    assert [r.status for r in rets] == [JobStatus.COMPLETED] * 2
    assert rets[1].return_value == DIVERGED_OBJECTIVE
    summary = json.loads((Path(str(rets[0].hydra_cfg.hydra.runtime.output_dir)) / hist.SUMMARY_JSON).read_text())
    assert rets[0].return_value == pytest.approx(summary["final"]["gen_error"]) and rets[0].return_value < DIVERGED_OBJECTIVE


def test_max_batch_must_be_a_whole_number(launch):
    from neuroscope.config import ConfigError

    with pytest.raises(ConfigError, match=r"hydra.launcher.max_batch=-1 .* 0 for no cap"):
        launch([["lr=0.05"]], max_batch=-1)


def test_a_signal_before_a_group_stops_launching(launch, groups, monkeypatch):
    seen = []
    real = batched._run_group

    def run_group(launcher, group):
        seen.append([j.num for j in group])
        real(launcher, group)
        monkeypatch.setattr(batched.stopping, "sweep_signal", lambda: signal.SIGTERM)  # came during the first group

    monkeypatch.setattr(batched, "_run_group", run_group)
    rets, _, sweep_dir = launch([["model.width=4"], ["model.width=8"]])
    assert seen == [[0]] and len(rets) == 1 and not (sweep_dir / "1_model.width=8").exists()


# ------------------------------------------------------------------------- the CLI (slow)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _metrics(path: Path) -> dict[str, np.ndarray]:
    return hist.read_metrics_csv(path)


@pytest.mark.slow
def test_batched_sweep_leaves_what_the_basic_launcher_leaves(tmp_path):
    args = ["-m", "lr=0.05,0.1,0.3", "steps=60", "curvature.every=5", "viz.format=none", "progress=false",
            "device.threads=1", "device=cpu", "device.dtype=float64"]
    for launcher in ("basic", "batched"):
        proc = run_cli([*args, f"hydra/launcher={launcher}", f"hydra.sweep.dir={launcher}"], tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    basic, batched_dir = tmp_path / "basic", tmp_path / "batched"
    jobs = sorted(p.name for p in basic.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == sorted(p.name for p in batched_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) and len(jobs) == 3
    below_edge: set[str] = set()
    for job in jobs:
        a, b = basic / job, batched_dir / job
        assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
        for name in (".hydra/overrides.yaml", ".hydra/config.yaml"):
            assert (a / name).read_text() == (b / name).read_text()
        ma, mb = _metrics(a / hist.METRICS_CSV), _metrics(b / hist.METRICS_CSV)
        lr = float(OmegaConf.load(a / ".hydra/config.yaml").lr)
        edge = np.flatnonzero(np.nan_to_num(ma["sharpness"], nan=0) >= 2 / lr)
        upto = int(edge[0]) + 1 if edge.size else len(ma["step"])  # GD is chaotic past the edge
        assert list(ma) == list(mb) and len(ma["step"]) == len(mb["step"])
        if upto == len(ma["step"]):
            below_edge.add(job)
        for column in ma:
            x, y = ma[column][:upto], mb[column][:upto]
            if column == "hvps":  # the single run times HVP variants at step 0 (SWEEP-FACTS)
                x, y = x[1:], y[1:]
            # the tolerances: 1e-10 for every column, 1e-6 for the eigenpair's; a projection
            # |Δθ·v| near 0 and a residual are small differences, measured against their column's scale
            rtol = 1e-6 if column in CURVATURE else 1e-10
            atol = rtol * np.nanmax(np.abs(x)) if column in SMALL and not np.isnan(x).all() else 1e-300
            np.testing.assert_allclose(y, x, rtol=rtol, atol=atol, equal_nan=True, err_msg=f"{job} {column}")
        ha = OmegaConf.load(a / ".hydra/hydra.yaml").hydra
        hb = OmegaConf.load(b / ".hydra/hydra.yaml").hydra
        assert (ha.job.num, ha.job.id, Path(ha.runtime.output_dir).name) == (hb.job.num, hb.job.id, Path(hb.runtime.output_dir).name)
    assert below_edge, "no job stayed below the edge: the final values were not compared"
    rows = {}
    for launcher, folder in (("basic", basic), ("batched", batched_dir)):
        with open(folder / hist.SUMMARY_CSV, newline="") as f:
            rows[launcher] = [{k: v for k, v in r.items() if k != "wall_seconds"} for r in csv.DictReader(f)]
    for a, b in zip(rows["basic"], rows["batched"], strict=True):
        assert list(a) == list(b)
        numbers = [k for k in a if _is_number(a[k]) and k != "lr"]
        assert {k: a[k] for k in a if k not in numbers} == {k: b[k] for k in b if k not in numbers}
        if a["job"] in below_edge:  # the final values of runs that stayed below the edge, as their metrics
            np.testing.assert_allclose([float(b[k]) for k in numbers], [float(a[k]) for k in numbers], rtol=1e-6)
    assert (batched_dir / "multirun.yaml").exists() and (batched_dir / hist.SWEEP_PNG).exists()


@pytest.mark.slow
def test_sigterm_during_a_batched_group_saves_it_interrupted_and_launches_no_further_group(tmp_path):
    from .test_faults_signals import start_cli, wait_for_rows

    args = ["-m", "model.width=16,8", "lr=0.05,0.1", "steps=20000", "curvature.every=5", "viz.format=none", "progress=false",
            "device.threads=1", "hydra/launcher=batched", "hydra.sweep.dir=sweep"]
    proc = start_cli(args, tmp_path, start_new_session=True)
    wait_for_rows(tmp_path / "sweep" / "0_lr=0.05,model.width=16" / hist.METRICS_CSV, 50, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 143, out
    sweep = tmp_path / "sweep"
    for job in ("0_lr=0.05,model.width=16", "1_lr=0.1,model.width=16"):  # the group that was training
        summary = json.loads((sweep / job / hist.SUMMARY_JSON).read_text())
        assert summary["status"] == "interrupted" and summary["steps_done"] < 20000
        assert (sweep / job / hist.CHECKPOINT_PT).exists()
    assert not (sweep / "2_lr=0.05,model.width=8").exists() and not (sweep / "3_lr=0.1,model.width=8").exists()
    assert "not launched" in out
    rows = list(csv.DictReader(open(sweep / hist.SUMMARY_CSV, newline="")))
    assert [r["status"] for r in rows] == ["interrupted", "interrupted"]


def test_the_sweep_presets_use_the_batched_launcher_and_keep_their_viz_format():
    from neuroscope import compose

    for preset in ("eos_sweep", "eos_sweep_2d"):
        cfg = compose([f"experiment={preset}"], return_hydra_config=True)
        assert cfg.hydra.launcher._target_.endswith("BatchedLauncher") and cfg.viz.format.value == "none"
        other = compose([f"experiment={preset}", "hydra/launcher=basic"], return_hydra_config=True)
        assert other.hydra.launcher._target_.endswith("BasicLauncher")  # the command line still chooses


def test_a_group_larger_than_the_free_memory_is_split_into_ensembles_that_fit(launch, groups, monkeypatch):
    from neuroscope import checks, compose
    from neuroscope.typed import to_config

    config = to_config(compose([*TINY, "lr=0.05"]))
    each = sum(checks.memory_estimate(config, checks.probe_model(config)).values())
    monkeypatch.setattr(checks, "available_memory", lambda device: 2.5 * each)  # room for two runs and a half
    launch([["lr=0.05"], ["lr=0.1"], ["lr=0.2"], ["lr=0.3"], ["lr=0.4"]])
    assert [len(g) for g in groups] == [2, 2, 1]


def test_a_group_trainer_s_lines_reach_the_log_of_the_member_they_name(launch, monkeypatch):
    """The contract for ensemble.train_group: a record with extra={"run_dir": ...} (or the run folder
    as a %-argument) goes to that member's log only, one naming no member to every member's."""
    log = logging.getLogger("neuroscope")
    real = ensemble_mod.train_group

    def train_group(cfgs, run_dirs, *, render=True, progress=None, overrides=(), configs_written=False):
        log.info("one ensemble of %d members", len(run_dirs))
        for d in run_dirs:
            log.warning("diverged at step 3 (lr %s)", Path(d).name, extra={"run_dir": d})
        return real(cfgs, run_dirs, render=False, progress=progress)

    monkeypatch.setattr(ensemble_mod, "train_group", train_group)
    rets, _, _ = launch([["lr=0.05"], ["lr=0.1"]])
    for ret in rets:
        folder = Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
        lines = (folder / "neuroscope.log").read_text().splitlines()
        assert sum("one ensemble of 2 members" in line for line in lines) == 1
        assert [line.split("(lr ")[1] for line in lines if "diverged at step 3" in line] == [f"{folder.name})"]

"""Faults a run folder must survive: signals in every phase (training, saving, rendering), a
second signal, two runs into one folder, a folder holding an earlier run, an interrupted joblib
sweep, and a full disk (a small tmpfs where the machine allows mounting one, else writes that
raise ENOSPC). After each: the files written are whole, no partial file is left, the summary
says what happened, and an error is one paragraph."""
from __future__ import annotations

import contextlib
import errno
import glob
import importlib
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroscope import OutputError, train
from neuroscope import rundir as hist
from neuroscope.diskspace import estimate_run_bytes
from neuroscope.stopping import Interrupted

from .conftest import fast_config, run_cli

render_mod = importlib.import_module("neuroscope.viz.render")  # the module, not the function viz.render
SMALL_VIZ = ["viz.size=[4,3]", "viz.dpi=40", "viz.frames=5"]


def partial_files(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).rglob(f"*{hist.PARTIAL}*"))


def assert_whole(run_dir: Path) -> None:
    """Every file that exists reads back; no partial file is left."""
    assert partial_files(run_dir) == []
    if (run_dir / hist.METRICS_CSV).exists():
        m = hist.read_metrics_csv(run_dir / hist.METRICS_CSV)
        assert np.array_equal(m["step"], np.arange(len(m["step"])))
    if (run_dir / hist.SUMMARY_JSON).exists():
        json.loads((run_dir / hist.SUMMARY_JSON).read_text())
    if (run_dir / hist.HISTORY_NPZ).exists():
        hist.load(run_dir)
    for name in (hist.MODEL_PT, hist.CHECKPOINT_PT):
        if (run_dir / name).exists():
            torch.load(run_dir / name, weights_only=False)


def signal_self(sig: int, times: int = 1) -> None:
    for _ in range(times):
        os.kill(os.getpid(), sig)


# ----------------------------------------------------------------------------- atomic writes


def test_an_atomic_write_that_fails_keeps_the_old_file_and_leaves_no_partial(tmp_path):
    path = tmp_path / "summary.json"
    hist.write_atomic(path, "old\n")
    with pytest.raises(RuntimeError), hist.atomic_path(path) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("the writer failed")
    assert path.read_text() == "old\n" and partial_files(tmp_path) == []
    hist.write_atomic(path, "new\n")
    assert path.read_text() == "new\n" and partial_files(tmp_path) == []


# ----------------------------------------------------------------------------- signals, in-process


def test_a_signal_during_the_end_of_run_save_keeps_the_finished_run(tmp_path, monkeypatch):
    real_save = hist.save

    def save_after_a_signal(history, run_dir):
        signal_self(signal.SIGINT)  # arrives while the run saves
        return real_save(history, run_dir)

    monkeypatch.setattr(hist, "save", save_after_a_signal)
    result = train(fast_config(), out_dir=tmp_path / "run")
    assert result.status == "finished" and result.exit_code == 130
    summary = json.loads((tmp_path / "run" / hist.SUMMARY_JSON).read_text())
    assert summary["status"] == "finished" and summary["signal"] == "SIGINT" and summary["steps_done"] == 30
    for name in (hist.METRICS_CSV, hist.HISTORY_NPZ, hist.MODEL_PT, hist.CHECKPOINT_PT, hist.SUMMARY_JSON):
        assert (tmp_path / "run" / name).exists(), name
    assert_whole(tmp_path / "run")


def test_a_signal_to_one_run_does_not_stop_the_next_run_of_the_process(tmp_path, monkeypatch):
    real_save = hist.save
    monkeypatch.setattr(hist, "save", lambda history, run_dir: (signal_self(signal.SIGTERM), real_save(history, run_dir))[1])
    assert train(fast_config(), out_dir=tmp_path / "a").exit_code == 143
    monkeypatch.setattr(hist, "save", real_save)
    after = train(fast_config(), out_dir=tmp_path / "b")
    assert (after.exit_code, after.summary["signal"], after.summary["steps_done"]) == (0, None, 30)


def test_a_second_signal_during_the_save_stops_at_once_leaving_whole_files_only(tmp_path, monkeypatch):
    def savez_interrupted(file, arrays):
        Path(file).write_bytes(b"half an npz")
        signal_self(signal.SIGINT, times=2)
        time.sleep(5)  # the second signal ends this at once

    monkeypatch.setattr(hist, "_savez", savez_interrupted)
    started = time.perf_counter()
    with pytest.raises(Interrupted) as stopped:
        train(fast_config(), out_dir=tmp_path / "run")
    assert stopped.value.at_once and stopped.value.exit_code == 130 and time.perf_counter() - started < 5
    assert not (tmp_path / "run" / hist.HISTORY_NPZ).exists()
    assert len(hist.read_metrics_csv(tmp_path / "run" / hist.METRICS_CSV)["step"]) == 31  # every row kept
    assert_whole(tmp_path / "run")


def test_a_signal_during_rendering_records_render_interrupted_and_keeps_the_status(tmp_path, monkeypatch):
    def gif_interrupted(path, source, fps):
        Path(path).write_bytes(b"GIF89a half")
        signal_self(signal.SIGTERM)
        time.sleep(5)

    monkeypatch.setattr(render_mod, "write_gif", gif_interrupted)
    result = train(fast_config("viz.format=gif", *SMALL_VIZ), out_dir=tmp_path / "run", render=True)
    run_dir = tmp_path / "run"
    summary = json.loads((run_dir / hist.SUMMARY_JSON).read_text())
    assert result.exit_code == 143 and summary["status"] == "finished"
    assert summary["render"] == "interrupted" and summary["signal"] == "SIGTERM"
    assert (run_dir / hist.DASHBOARD_PNG).exists() and not (run_dir / hist.ANIMATION_GIF).exists()
    assert_whole(run_dir)


def test_the_summary_says_how_rendering_went(tmp_path):
    drawn = train(fast_config("viz.format=none", *SMALL_VIZ), out_dir=tmp_path / "a", render=True)
    not_drawn = train(fast_config(), out_dir=tmp_path / "b")
    assert (drawn.summary["render"], not_drawn.summary["render"]) == ("done", "off")
    assert drawn.summary["signal"] is None and drawn.exit_code == 0


# ----------------------------------------------------------------------------- one run per folder


def test_a_run_into_a_folder_another_run_holds_is_refused_and_the_folder_is_untouched(tmp_path):
    run_dir = tmp_path / "run"
    train(fast_config(), out_dir=run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    with hist.lock_run_dir(run_dir):  # as the other run holds it
        with pytest.raises(OutputError, match="is in use: another NeuroScope run"):
            train(fast_config("seed=1"), out_dir=run_dir)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


@pytest.mark.slow
def test_a_second_cli_run_into_a_running_folder_exits_2_and_the_first_finishes(tmp_path):
    args = ["hydra.run.dir=shared", "steps=1500", "curvature.every=5", "viz.format=none", "progress=false"]
    first = subprocess.Popen([sys.executable, "-m", "neuroscope", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    wait_for_rows(tmp_path / "shared" / hist.METRICS_CSV, 20, first)
    config_before = (tmp_path / "shared" / ".hydra" / "config.yaml").read_text()
    second = run_cli([*args, "seed=7"], tmp_path)
    assert second.returncode == 2
    assert "is in use" in second.stderr and "Traceback" not in second.stderr + second.stdout
    assert len(second.stderr.strip().splitlines()) == 1  # one paragraph
    out, _ = first.communicate(timeout=240)
    assert first.returncode == 0, out
    assert (tmp_path / "shared" / ".hydra" / "config.yaml").read_text() == config_before
    summary = json.loads((tmp_path / "shared" / hist.SUMMARY_JSON).read_text())
    assert summary["status"] == "finished" and summary["seed"] == 0
    assert len(hist.read_metrics_csv(tmp_path / "shared" / hist.METRICS_CSV)["step"]) == 1501


def test_a_run_into_a_folder_of_an_earlier_run_removes_its_files_and_logs_which(tmp_path, caplog):
    run_dir = tmp_path / "run"
    train(fast_config("viz.format=gif", *SMALL_VIZ), out_dir=run_dir, render=True)
    assert (run_dir / hist.ANIMATION_GIF).exists()
    (run_dir / "history.partial.npz").write_bytes(b"left by a killed run")
    with caplog.at_level(logging.WARNING, logger="neuroscope"):
        result = train(fast_config("steps=12", "lr=0.05"), out_dir=run_dir)
    assert "held files of an earlier run" in caplog.text and "animation.gif" in caplog.text
    assert not (run_dir / hist.ANIMATION_GIF).exists() and not (run_dir / hist.DASHBOARD_PNG).exists()
    assert partial_files(run_dir) == []
    assert "lr: 0.05" in (run_dir / hist.CONFIG_YAML).read_text()  # the config is this run's, not the earlier one's
    assert len(hist.read_metrics_csv(run_dir / hist.METRICS_CSV)["step"]) == 13 and result.summary["steps"] == 12


# ----------------------------------------------------------------------------- full disk


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str):
    """A tmpfs of ``size`` mounted at ``path`` (root only); the test is skipped where it cannot be."""
    path.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                 capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        mounted = False
    if not mounted:
        pytest.skip("cannot mount a tmpfs here (needs root); the ENOSPC tests cover the same paths")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=20)


def test_a_run_the_disk_cannot_take_is_refused_before_training(tmp_path, monkeypatch):
    import shutil

    from neuroscope import diskspace

    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 50_000, 50_000))
    with pytest.raises(OutputError, match=r"has 0.05 MB free, but this run will write about .* MB \(metrics.csv"):
        train(fast_config("steps=5000"), out_dir=tmp_path / "run")
    assert not (tmp_path / "run" / hist.METRICS_CSV).exists()


def test_on_a_small_tmpfs_a_run_that_does_not_fit_is_refused_before_training(tmp_path):
    with small_tmpfs(tmp_path / "disk", "2m") as disk:
        with pytest.raises(OutputError, match="MB free, but this run will write about"):
            train(fast_config("steps=20000", "viz.format=mp4", "viz.frames=100"), out_dir=disk / "run", render=True)
        assert not (disk / "run" / hist.METRICS_CSV).exists()


@pytest.mark.slow
def test_the_estimate_covers_every_file_a_run_writes(tmp_path):
    for fmt in ("mp4", "gif"):
        result = train(fast_config("steps=200", "curvature.every=5", f"viz.format={fmt}", "viz.frames=40"),
                       out_dir=tmp_path / fmt, render=True)
        h, config = result.history, fast_config(f"viz.format={fmt}", "viz.frames=40")
        estimate = estimate_run_bytes(
            n_params=result.summary["n_params"], dtype_bytes=4, steps=200, n_columns=len(h.metrics),
            frames=len(h.frame_steps), plot_points=len(h.geometry.plot_x), viz=hist_viz(config),
        )
        for name, n in estimate.items():
            size = (tmp_path / fmt / name).stat().st_size
            assert size <= n, f"{fmt}: {name} is {size} bytes, estimated {n}"


def hist_viz(config):
    from neuroscope.typed import to_config

    return to_config(config).viz


def test_a_disk_full_during_a_checkpoint_is_one_paragraph_keeping_metrics_and_no_partial(tmp_path, monkeypatch):
    real_write = Path.write_bytes

    def fills_the_disk(self, data):
        if self.name.startswith("checkpoint"):
            real_write(self, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", fills_the_disk)
    with pytest.raises(OutputError) as failed:
        train(fast_config("steps=50", "checkpoint.every=20"), out_dir=tmp_path / "run")
    message = str(failed.value)
    assert "No space left on device" in message and "metrics.csv keeps the rows" in message and "\n" not in message
    assert len(hist.read_metrics_csv(tmp_path / "run" / hist.METRICS_CSV)["step"]) == 20
    assert partial_files(tmp_path / "run") == [] and not (tmp_path / "run" / hist.CHECKPOINT_PT).exists()


def test_on_a_tmpfs_a_checkpoint_that_does_not_fit_is_one_paragraph_not_a_torch_error(tmp_path, monkeypatch):
    from neuroscope import run as run_mod

    monkeypatch.setattr(run_mod, "check_free_space", lambda run_dir, estimate: None)  # let it start, to fill the disk
    with small_tmpfs(tmp_path / "disk", "12m") as disk:
        # ~2M weights: model.pt (8 MB) fits, checkpoint.pt (8 MB more) does not
        with pytest.raises(OutputError, match=r"No space left on device.*metrics.csv keeps the rows"):
            train(fast_config("model.width=1000", "model.depth=3", "steps=2", "curvature.every=0"), out_dir=disk / "run")
        assert partial_files(disk / "run") == [] and not (disk / "run" / hist.CHECKPOINT_PT).exists()
        assert len(hist.read_metrics_csv(disk / "run" / hist.METRICS_CSV)["step"]) == 3


@pytest.mark.slow
def test_a_disk_that_fills_mid_run_ends_in_one_paragraph_exit_2(tmp_path):
    with small_tmpfs(tmp_path / "disk", "24m") as disk:
        proc = start_cli(["hydra.run.dir=" + str(disk / "run"), "steps=20000", "curvature.every=0", "checkpoint.every=500",
                          "viz.format=none", "progress=false"], tmp_path)
        wait_for_rows(disk / "run" / hist.METRICS_CSV, 200, proc)
        # fill what is left; the disk may already be too full even to create the filler (the run's
        # own writes can get there first), which is the state this test wants either way
        with contextlib.suppress(OSError), open(disk / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 65536)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 2, out
        assert "No space left on device" in out and "Traceback" not in out
        rows = hist.read_metrics_csv(disk / "run" / hist.METRICS_CSV)
        assert len(rows["step"]) >= 200 and partial_files(disk / "run") == []


# ----------------------------------------------------------------------------- signals, CLI


def start_cli(args: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "neuroscope", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"), **kwargs)


def wait_for_rows(csv: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if csv.exists() and len(csv.read_text().splitlines()) > n:
            return
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    raise AssertionError(f"{csv} did not get {n} rows")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_stops_at_once_without_a_traceback(tmp_path, sig):
    proc = start_cli(["hydra.run.dir=run", "steps=100000", "curvature.every=5", "viz.format=gif", "progress=false"], tmp_path)
    wait_for_rows(tmp_path / "run" / hist.METRICS_CSV, 30, proc)
    proc.send_signal(sig)
    # the run stops at the end of its step, then saves and renders: the second signal comes once
    # the first was handled (two sent at once can reach the process as one: signals do not queue)
    summary, deadline = tmp_path / "run" / hist.SUMMARY_JSON, time.time() + 60
    while not summary.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, out
    assert "Traceback" not in out and "stopping at once" in out and len(out.splitlines()) < 15, out
    assert_whole(tmp_path / "run")


@pytest.mark.slow
def test_a_signal_during_cli_rendering_exits_143_with_render_interrupted(tmp_path):
    proc = start_cli(["hydra.run.dir=run", "steps=200", "curvature.every=5", "viz.format=gif", "viz.frames=200",
                      "progress=false"], tmp_path)
    summary_path = tmp_path / "run" / hist.SUMMARY_JSON
    deadline = time.time() + 120
    png = tmp_path / "run" / hist.DASHBOARD_PNG
    while not (summary_path.exists() and png.exists()) and time.time() < deadline:  # the summary is written
        assert proc.poll() is None, proc.stdout.read()  # before rendering starts, the png first in it, then the GIF's 200 frames
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    summary = json.loads(summary_path.read_text())
    assert proc.returncode == 143, out
    assert summary["status"] == "finished" and summary["render"] == "interrupted" and summary["signal"] == "SIGTERM"
    assert not (tmp_path / "run" / hist.ANIMATION_GIF).exists()
    assert_whole(tmp_path / "run")


# ----------------------------------------------------------------------------- interrupted joblib sweep


def live_processes(pgid: int) -> list[str]:
    """The processes of group ``pgid`` that still run (zombies waiting to be reaped do not)."""
    found = []
    for status in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = Path(status).read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(Path(status).parent.name)
    return found


JOBLIB = pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
                            reason="hydra-joblib-launcher is not installed (pip install '.[joblib]')")


@pytest.mark.slow
@pytest.mark.parametrize("how, launcher", [
    pytest.param("ctrl-c to the group", "joblib", marks=JOBLIB),
    pytest.param("sigterm to the parent", "joblib", marks=JOBLIB),
    ("ctrl-c to the group", "basic"),
])
def test_an_interrupted_sweep_ends_every_job_interrupted_with_its_files_and_no_process_left(tmp_path, how, launcher):
    # joblib: three jobs on two workers, the third waits, and must not train once the sweep is stopped
    args = ["-m", "lr=0.05,0.1,0.02", "steps=20000", "curvature.every=5", "viz.format=none", "progress=false",
            "device.threads=1", "hydra.sweep.dir=sweep"]
    if launcher == "joblib":
        args += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    proc = start_cli(args, tmp_path, start_new_session=True)
    for job in ("0_lr=0.05", "1_lr=0.1") if launcher == "joblib" else ("0_lr=0.05",):
        wait_for_rows(tmp_path / "sweep" / job / hist.METRICS_CSV, 50, proc)
    if how == "ctrl-c to the group":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == (130 if how.startswith("ctrl-c") else 143), out
    deadline = time.time() + 10
    while live_processes(proc.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert live_processes(proc.pid) == []
    rows = (tmp_path / "sweep" / hist.SUMMARY_CSV).read_text().splitlines()
    assert len(rows) == 4 and all(",interrupted," in r for r in rows[1:]), rows
    for job in ("0_lr=0.05", "1_lr=0.1", "2_lr=0.02"):
        run_dir = tmp_path / "sweep" / job
        summary = json.loads((run_dir / hist.SUMMARY_JSON).read_text())
        assert summary["status"] == "interrupted" and summary["steps_done"] < 20000
        assert len(hist.read_metrics_csv(run_dir / hist.METRICS_CSV)["step"]) == summary["steps_done"] + 1
        assert (run_dir / hist.CHECKPOINT_PT).exists() and (run_dir / hist.DASHBOARD_PNG).exists()
        assert_whole(run_dir)

"""Fault injection: a run killed with SIGKILL at any moment resumes to the bytes of an
uninterrupted run; a run folder's files are data, never code; a resume never destroys or
silently changes the run it continues."""
from __future__ import annotations

import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from neuroscope import ConfigError, resume, train
from neuroscope.faults import FAULT_ENV
from neuroscope.rundir import load, read_metrics_csv

from .conftest import fast_config, run_cli

# Small enough to be quick, long enough to be killed at many moments; curvature on, so the
# tracker's warm start, generator and HVP timings must survive the checkpoint too.
KILLABLE = ["steps=300", "curvature.every=3", "checkpoint.every=7", "viz.format=none", "viz.frames=5", "progress=false"]


def _cli(args, cwd, fault=None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.Popen([sys.executable, "-m", "neuroscope", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> bytes:
    """metrics.csv of the KILLABLE run, never stopped."""
    root = tmp_path_factory.mktemp("reference")
    proc = _cli([*KILLABLE, "hydra.run.dir=ref"], root)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return (root / "ref" / "metrics.csv").read_bytes()


def _resume_matches(src: pathlib.Path, out: pathlib.Path, reference: bytes) -> None:
    result = resume(str(src), out_dir=str(out))
    assert result.status == "finished"
    assert (out / "metrics.csv").read_bytes() == reference
    saved = load(out).metrics  # history.npz and metrics.csv agree
    for column, values in read_metrics_csv(out / "metrics.csv").items():
        np.testing.assert_array_equal(saved[column], values, err_msg=column)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["after_checkpoint:7", "after_checkpoint:147", "after_checkpoint:294",
                                   "final_save:history", "final_save:model", "final_save:summary"])
def test_sigkill_right_after_a_checkpoint_or_during_the_final_save_resumes_to_identical_bytes(tmp_path, uninterrupted, fault):
    proc = _cli([*KILLABLE, "hydra.run.dir=killed"], tmp_path, fault=fault)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, out
    assert (tmp_path / "killed" / "checkpoint.pt").exists()
    _resume_matches(tmp_path / "killed", tmp_path / "resumed", uninterrupted)


@pytest.mark.slow
def test_sigkill_at_random_moments_resumes_to_identical_bytes(tmp_path, uninterrupted):
    rng = random.Random(11)
    for i, rows in enumerate(sorted(rng.sample(range(20, 280), 3))):
        root = tmp_path / f"kill{i}"
        root.mkdir()
        proc = _cli([*KILLABLE, "hydra.run.dir=killed"], root)
        run_dir = root / "killed"
        deadline = time.time() + 300
        while not ((run_dir / "checkpoint.pt").exists() and _rows(run_dir) >= rows):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()[0]
            time.sleep(rng.uniform(0, 0.02))
        proc.kill()
        proc.communicate()
        assert not (run_dir / "summary.json").exists(), "killed too late to test anything"
        _resume_matches(run_dir, root / "resumed", uninterrupted)


def _rows(run_dir: pathlib.Path) -> int:
    path = run_dir / "metrics.csv"
    return path.read_bytes().count(b"\n") - 1 if path.exists() else 0


def test_resume_ignores_rows_written_after_the_checkpoint(tmp_path):
    """The checkpoint counts metrics.csv's bytes; what the file gained after it is not resumed."""
    train(fast_config("checkpoint.every=5"), out_dir=tmp_path / "a")
    whole = (tmp_path / "a" / "metrics.csv").read_bytes()
    with open(tmp_path / "a" / "metrics.csv", "ab") as f:
        f.write(b"31,0.5,0.5,")  # a row cut off by a kill
    result = resume(str(tmp_path / "a"), ["steps=40"], out_dir=str(tmp_path / "b"))
    assert result.status == "finished"
    resumed = (tmp_path / "b" / "metrics.csv").read_bytes()
    assert resumed.startswith(whole[: whole.rindex(b"\n30,")]) and resumed.count(b"\n") == 42


def test_resume_refuses_a_metrics_csv_shorter_than_its_checkpoint_counted(tmp_path):
    train(fast_config(), out_dir=tmp_path / "a")
    csv = tmp_path / "a" / "metrics.csv"
    csv.write_bytes(csv.read_bytes()[:-200])
    with pytest.raises(ConfigError, match="metrics.csv cannot be continued"):
        resume(str(tmp_path / "a"), ["steps=40"], out_dir=str(tmp_path / "b"))


# --------------------------------------------------------------------------- run folders are data


class _TouchOnLoad:
    """Unpickling this calls pathlib.Path.touch(marker): what a crafted checkpoint would do."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _craft(path: pathlib.Path, marker: pathlib.Path) -> None:
    torch.save({"format": 2, "model": {}, "state": _TouchOnLoad(marker)}, path)


def test_crafted_checkpoint_is_a_paragraph_and_nothing_in_it_runs(tmp_path):
    train(fast_config(), out_dir=tmp_path / "a")
    control, marker = tmp_path / "control", tmp_path / "marker"
    _craft(tmp_path / "control.pt", control)
    torch.load(tmp_path / "control.pt", weights_only=False)
    assert control.exists()  # the crafted file does run code when unpickled
    _craft(tmp_path / "a" / "checkpoint.pt", marker)
    with pytest.raises(ConfigError) as refused:
        resume(str(tmp_path / "a"), ["steps=40"], out_dir=str(tmp_path / "b"))
    text = str(refused.value)
    assert "checkpoint.pt is not a NeuroScope checkpoint" in text and "it asks to call or build getattr" in text
    assert "nothing in it was executed" in text and "\n" not in text
    assert not marker.exists()


@pytest.mark.slow
def test_crafted_checkpoint_on_the_command_line_exits_2_before_any_folder_is_made(tmp_path):
    train(fast_config(), out_dir=tmp_path / "a")
    marker = tmp_path / "marker"
    _craft(tmp_path / "a" / "checkpoint.pt", marker)
    proc = run_cli(["resume=a", "steps=40", "hydra.run.dir=b"], tmp_path)
    assert proc.returncode == 2
    assert "nothing in it was executed" in proc.stderr and "Traceback" not in proc.stdout + proc.stderr
    assert not marker.exists() and not (tmp_path / "b").exists()


def _payload(path: pathlib.Path) -> dict:
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("damage, reason", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "cannot be read as a torch checkpoint"),
    (lambda p: p.write_bytes(b"not a checkpoint at all"), "cannot be read as a torch checkpoint"),
    (lambda p: torch.save({**_payload(p), "format": 1}, p), "its format is 1"),
    (lambda p: torch.save({k: v for k, v in _payload(p).items() if k != "metrics_bytes"}, p), "no 'metrics_bytes' entry"),
    (lambda p: torch.save({**_payload(p), "state": {**_payload(p)["state"], "tracker": {"generator": 1}}}, p), "tracker"),
    (lambda p: torch.save([torch.zeros(3)], p), "holds a list"),
])
def test_a_checkpoint_that_is_not_ours_is_one_paragraph_naming_file_and_fault(tmp_path, damage, reason):
    train(fast_config("curvature.every=5"), out_dir=tmp_path / "a")
    damage(tmp_path / "a" / "checkpoint.pt")
    with pytest.raises(ConfigError) as refused:
        resume(str(tmp_path / "a"), ["steps=40"], out_dir=str(tmp_path / "b"))
    text = str(refused.value)
    assert str(tmp_path / "a" / "checkpoint.pt") in text and reason in text and "\n" not in text


# --------------------------------------------------------------------------- the config it ran with


def test_resume_refuses_a_config_edited_after_the_run_naming_the_keys(tmp_path):
    train(fast_config(), out_dir=tmp_path / "a")
    config = tmp_path / "a" / ".hydra" / "config.yaml"
    text = config.read_text()
    assert "lr: 0.1\n" in text and "seed: 0\n" in text
    config.write_text(text.replace("lr: 0.1\n", "lr: 0.5\n").replace("seed: 0\n", "seed: 3\n"))
    with pytest.raises(ConfigError) as refused:
        resume(str(tmp_path / "a"), ["steps=40"], out_dir=str(tmp_path / "b"))
    message = str(refused.value)
    assert "lr (0.1 in checkpoint.pt, 0.5 in .hydra/config.yaml)" in message and "seed (0" in message
    assert "steps" not in message.split("Undo")[0]  # only what differs is named
    assert not (tmp_path / "b").exists()


def test_resume_of_a_resumed_run_passes_the_config_check(tmp_path):
    train(fast_config(), out_dir=tmp_path / "a")
    resume(str(tmp_path / "a"), ["steps=40"], out_dir=str(tmp_path / "b"))
    result = resume(str(tmp_path / "b"), ["steps=50"], out_dir=str(tmp_path / "c"))
    assert result.summary["steps_done"] == 50


# --------------------------------------------------------------------------- never into its own folder


def _files(run_dir: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_resume_into_its_own_folder_is_refused_and_the_source_kept(tmp_path):
    train(fast_config(), out_dir=tmp_path / "a")
    before = _files(tmp_path / "a")
    for out in (str(tmp_path / "a"), str(tmp_path / "a" / ".." / "a")):
        with pytest.raises(ConfigError, match="Pick another folder"):
            resume(str(tmp_path / "a"), ["steps=40"], out_dir=out)
    assert _files(tmp_path / "a") == before


@pytest.mark.slow
def test_resume_into_its_own_folder_on_the_command_line_exits_2_and_keeps_the_source(tmp_path):
    train(fast_config(), out_dir=tmp_path / "a")
    before = _files(tmp_path / "a")
    proc = run_cli(["resume=a", "steps=40", f"hydra.run.dir={tmp_path / 'a'}"], tmp_path)
    assert proc.returncode == 2
    assert "Pick another folder" in proc.stderr and "Traceback" not in proc.stdout + proc.stderr
    assert _files(tmp_path / "a") == before

"""A group of runs trained as one ensemble (neuroscope.ensemble.train_group) against the same
runs trained separately: every member's metrics, weights and folder."""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
import signal

import numpy as np
import pytest
import torch

from neuroscope import ConfigError, resume, train
from neuroscope.ensemble import train_group
from neuroscope.rundir import read_metrics_csv, read_summary

from .conftest import fast_config

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = ["device=cpu", "device.dtype=float64", "curvature.every=3", "curvature.hvp=reuse", "model.width=8"]


CURVATURE = ("sharpness", "projection", "eig_residual", "projection_err")
SMALL = ("projection", "eig_residual", "projection_err")


def members(*per_member: list[str], common=()):
    return [fast_config(*F64, *common, *m) for m in per_member]


def separate(cfgs, root):
    return [train(c, out_dir=root / f"alone{e}") for e, c in enumerate(cfgs)]


def grouped(cfgs, root, **kw):
    return train_group(cfgs, [root / f"member{e}" for e in range(len(cfgs))], render=False, progress=False, **kw)


def edge_step(metrics, lr: float) -> int:
    """The first row whose sharpness reaches 2/lr (every row when it never does)."""
    hit = np.nonzero(metrics["sharpness"] >= 2.0 / lr)[0]
    return int(hit[0]) + 1 if len(hit) else len(metrics["step"])


def assert_agrees(member_dir, alone_dir, lr: float, rel: float, sharp_rel: float):
    got, want = read_metrics_csv(member_dir / "metrics.csv"), read_metrics_csv(alone_dir / "metrics.csv")
    assert set(got) == set(want)
    upto = edge_step(want, lr)
    assert upto > 3
    for column in want:
        a, b = got[column][:upto], want[column][:upto]
        assert np.array_equal(np.isnan(a), np.isnan(b)), column
        ok = ~np.isnan(b)
        tol = sharp_rel if column in CURVATURE else rel
        # a projection |Δθ·v| near 0 and a residual are small differences: relative to their column's scale
        atol = tol * np.abs(b[ok]).max() if column in SMALL and ok.any() else 0
        assert np.allclose(a[ok], b[ok], rtol=tol, atol=atol), (column, np.max(np.abs(a[ok] - b[ok]) / np.abs(b[ok]).clip(1e-300)))


def test_float64_members_equal_their_separate_runs_up_to_the_edge(tmp_path):
    cfgs = members(["lr=0.05", "seed=0"], ["lr=0.2", "seed=1"], ["lr=0.25", "seed=2"], ["lr=0.1", "seed=3", "data.noise=0.1", "viz.frames=3"],
                   common=["steps=40"])
    results, alone = grouped(cfgs, tmp_path), separate(cfgs, tmp_path)
    for e, (r, a, lr) in enumerate(zip(results, alone, (0.05, 0.2, 0.25, 0.1))):
        assert r.status == a.status == "finished"
        assert_agrees(r.run_dir, a.run_dir, lr, rel=1e-10, sharp_rel=1e-6)
        assert read_summary(r.run_dir)["lr"] == lr
        assert r.history.frame_steps.tolist() == a.history.frame_steps.tolist()  # each member its own frames
        early = a.history.frame_steps < edge_step(a.history.metrics, lr)
        assert np.allclose(r.history.frame_pred[early], a.history.frame_pred[early], rtol=1e-8, atol=1e-12)
        for name in ("model.pt", "checkpoint.pt", "history.npz", "summary.json", ".hydra/config.yaml"):
            assert (r.run_dir / name).exists(), name
        w = torch.load(r.run_dir / "model.pt", weights_only=True)
        v = torch.load(a.run_dir / "model.pt", weights_only=True)
        assert w.keys() == v.keys()
    assert read_metrics_csv(results[0].run_dir / "metrics.csv")["loss"][0] != read_metrics_csv(results[1].run_dir / "metrics.csv")["loss"][0]


def test_float32_members_agree_to_1e_5(tmp_path):
    cfgs = [fast_config("device=cpu", "curvature.every=5", "curvature.hvp=reuse", f"lr={lr}", f"seed={s}")
            for lr, s in ((0.1, 0), (0.3, 4))]
    for r, a, lr in zip(grouped(cfgs, tmp_path), separate(cfgs, tmp_path), (0.1, 0.3)):
        assert_agrees(r.run_dir, a.run_dir, lr, rel=1e-5, sharp_rel=1e-5)


def test_a_diverging_member_is_frozen_and_saved_diverged_while_the_others_finish(tmp_path):
    cfgs = members(["lr=0.1"], ["lr=30", "seed=5"], ["lr=0.2", "seed=2"], common=["steps=25"])
    results, alone = grouped(cfgs, tmp_path), separate(cfgs, tmp_path)
    assert [r.status for r in results] == ["finished", "diverged", "finished"] == [a.status for a in alone]
    summary = read_summary(results[1].run_dir)
    assert summary["status"] == "diverged" and summary["diverged_at_step"] == read_summary(alone[1].run_dir)["diverged_at_step"]
    diverged = read_metrics_csv(results[1].run_dir / "metrics.csv")
    assert len(diverged["step"]) == len(read_metrics_csv(alone[1].run_dir / "metrics.csv")["step"]) < 26
    for e in (0, 2):
        assert_agrees(results[e].run_dir, alone[e].run_dir, (0.1, 0.2)[e // 2], rel=1e-10, sharp_rel=1e-6)
        for p, q in zip(results[e].model.parameters(), alone[e].model.parameters()):
            assert torch.allclose(p, q, rtol=1e-9, atol=1e-12)


def test_a_pde_group_with_random_collocation_points_agrees_with_separate_runs(tmp_path):
    common = ["loss=poisson1d", "data.sampling=uniform", "loss.n_collocation=24", "steps=20"]
    cfgs = members(["lr=0.002", "seed=0"], ["lr=0.004", "seed=1", "loss.bc_weight=2"], common=common)
    results, alone = grouped(cfgs, tmp_path), separate(cfgs, tmp_path)
    assert results[0].history.geometry.collocation_x.tolist() != results[1].history.geometry.collocation_x.tolist()
    for r, a, lr in zip(results, alone, (0.002, 0.004)):
        assert r.status == "finished"
        assert_agrees(r.run_dir, a.run_dir, lr, rel=1e-10, sharp_rel=1e-6)


def test_an_interrupted_group_saves_every_member_and_one_resumes_alone_to_its_uninterrupted_run(tmp_path, monkeypatch):
    from neuroscope import trainer as trainer_mod

    cfgs = members(["lr=0.05"], ["lr=0.1", "seed=3"], common=["steps=30", "checkpoint.every=5"])
    update = trainer_mod.Trainer._update
    calls = []

    def update_then_signal(self, grads, momentum):
        update(self, grads, momentum)
        calls.append(1)
        if len(calls) == 12:
            os.kill(os.getpid(), signal.SIGINT)  # a real signal, handled as a user's Ctrl-C

    monkeypatch.setattr(trainer_mod.Trainer, "_update", update_then_signal)
    results = grouped(cfgs, tmp_path)
    monkeypatch.undo()
    assert [r.status for r in results] == ["interrupted", "interrupted"]
    assert all(read_summary(r.run_dir)["steps_done"] == 11 for r in results)
    assert all(r.exit_code == 128 + signal.SIGINT for r in results)
    resumed = resume(str(results[1].run_dir), out_dir=str(tmp_path / "resumed"))
    whole = train(cfgs[1], out_dir=tmp_path / "whole")
    assert resumed.status == "finished"
    assert_agrees(resumed.run_dir, whole.run_dir, 0.1, rel=1e-10, sharp_rel=1e-6)


def test_configs_that_cannot_batch_are_refused_in_one_paragraph(tmp_path):
    with pytest.raises(ConfigError) as e:
        grouped([fast_config("model.width=8"), fast_config("model.width=16")], tmp_path)
    assert "member1" in str(e.value) and "\n" not in str(e.value) and "group_by_key" in str(e.value)
    with pytest.raises(ConfigError, match="curvature.terms=true trains only as a run of its own"):
        grouped([fast_config("curvature.terms=true"), fast_config("curvature.terms=true", "lr=0.2")], tmp_path)
    assert not (tmp_path / "member0" / "metrics.csv").exists()


def test_a_run_is_an_ensemble_of_one_bit_for_bit_the_plain_network_loop(tmp_path):
    """Oracle: the loop written out with the plain MLP (nn.Linear) and a flat-gradient update."""
    from neuroscope.model import MLP
    from neuroscope.run import seed_everything

    cfg = fast_config("device=cpu", "curvature.every=0", "steps=15", "data.n_train=32")
    result = train(cfg, out_dir=tmp_path)
    x = torch.linspace(-math.pi, math.pi, 32, dtype=torch.float64)[:, None]  # data.sampling=grid
    y = torch.sin(x.sum(dim=1)).float()
    x = x.float()
    seed_everything(0)
    net = MLP(1)
    losses = []
    for _ in range(16):
        diff = net(x) - y
        loss = (diff * diff).mean()
        losses.append(loss.item())
        grads = torch.autograd.grad(loss, list(net.parameters()))
        flat = torch.cat([g.reshape(-1) for g in grads])
        with torch.no_grad():
            offset = 0
            for q in net.parameters():
                q.sub_(0.1 * flat[offset:offset + q.numel()].view_as(q))
                offset += q.numel()
    assert result.history.metrics["loss"].tolist() == losses


def test_momentum_members_with_their_own_l2_weights_equal_their_separate_runs(tmp_path):
    cfgs = members(["lr=0.05", "loss.l2_weight=0.001"], ["lr=0.1", "seed=1", "loss.l2_weight=0.01"],
                   common=["optimizer=heavy_ball", "optimizer.momentum=0.5", "steps=25"])
    for r, a, lr in zip(grouped(cfgs, tmp_path), separate(cfgs, tmp_path), (0.05, 0.1)):
        assert_agrees(r.run_dir, a.run_dir, lr, rel=1e-10, sharp_rel=1e-6)
        velocity = torch.load(r.run_dir / "checkpoint.pt", weights_only=True)["state"]["optimizer"]["velocity"]
        assert velocity.shape == (sum(p.numel() for p in a.model.parameters()),)  # a separate run's format


@pytest.mark.slow  # three dashboards
def test_every_member_folder_is_rendered_and_summarised_like_a_single_run(tmp_path):
    cfgs = [fast_config("device=cpu", "lr=0.05", "steps=10"), fast_config("device=cpu", "lr=0.1", "seed=2", "steps=10")]
    results = train_group(cfgs, [tmp_path / "a", tmp_path / "b"], progress=False)
    single = train(cfgs[1], out_dir=tmp_path / "single", render=True)
    for r in results:
        assert read_summary(r.run_dir)["render"] == "done" and (r.run_dir / "dashboard.png").stat().st_size > 0
    names = {p.relative_to(results[1].run_dir) for p in results[1].run_dir.rglob("*")}
    assert names == {p.relative_to(single.run_dir) for p in single.run_dir.rglob("*")}
    assert set(read_summary(results[1].run_dir)) == set(read_summary(single.run_dir))
    # train_seconds is the ensemble's loop, shared: the summary says by how many runs
    assert [read_summary(r.run_dir)["ensemble_members"] for r in results] == [2, 2]
    assert read_summary(single.run_dir)["ensemble_members"] == 1
    assert read_summary(results[0].run_dir)["train_seconds"] == read_summary(results[1].run_dir)["train_seconds"]


# ------------------------------------------------------------------ numbers read back every few steps (CUDA)


def _flushed(cfgs, root, monkeypatch, every: int, **kw):
    from neuroscope import ensemble

    monkeypatch.setattr(ensemble, "FLUSH_EVERY", {"cpu": every})
    return grouped(cfgs, root, **kw)


def _same_files(a, b):
    assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
    sa, sb = read_summary(a), read_summary(b)
    for key in ("wall_seconds", "train_seconds"):
        sa.pop(key), sb.pop(key)
    assert sa == sb
    ca, cb = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (a, b))
    assert ca["metrics_bytes"] == cb["metrics_bytes"] == (a / "metrics.csv").stat().st_size
    for key in ("model", "state", "status"):
        _assert_nested_equal(ca[key], cb[key])


def _assert_nested_equal(x, y, where=""):
    if isinstance(x, Mapping):
        assert set(x) == set(y), where
        for k in x:
            if k != "train_seconds":
                _assert_nested_equal(x[k], y[k], f"{where}.{k}")
    elif isinstance(x, torch.Tensor):
        assert x.shape == y.shape and x.dtype == y.dtype and torch.equal(x.isnan(), y.isnan()), where
        assert torch.equal(x.nan_to_num(0.0), y.nan_to_num(0.0)), where  # bit for bit, NaN where NaN
    elif isinstance(x, (list, tuple)) and x and isinstance(x[0], (torch.Tensor, np.ndarray)):
        assert len(x) == len(y) and all(np.array_equal(np.asarray(p), np.asarray(q)) for p, q in zip(x, y)), where
    else:
        assert x == y or (x != x and y != y), where


def test_numbers_read_back_every_7_steps_leave_the_bytes_of_step_by_step(tmp_path, monkeypatch):
    """A diverging member among finishing ones, curvature every 3 steps, frames and a
    checkpoint every 5: reading the numbers back in windows changes no byte of any file."""
    cfgs = members(["lr=0.1"], ["lr=30", "seed=5"], ["lr=0.2", "seed=2", "viz.frames=4"],
                   common=["steps=40", "curvature.every=9", "checkpoint.every=11", "viz.frames=7"])
    sync = _flushed(cfgs, tmp_path / "sync", monkeypatch, 1)
    windowed = _flushed(cfgs, tmp_path / "windowed", monkeypatch, 7)
    assert [r.status for r in windowed] == ["finished", "diverged", "finished"]
    for a, b in zip(sync, windowed):
        _same_files(a.run_dir, b.run_dir)
        assert np.array_equal(a.history.frame_pred, b.history.frame_pred) and a.history.frame_steps.tolist() == b.history.frame_steps.tolist()


def test_a_momentum_group_diverging_inside_a_window_keeps_the_velocity_of_its_last_step(tmp_path, monkeypatch):
    """Every member diverges between two reads: the loop stops where step by step it would have,
    and the update rule's state is the one it had there (not advanced by the later steps)."""
    cfgs = members(["lr=20"], ["lr=30", "seed=1"], common=["optimizer=heavy_ball", "optimizer.momentum=0.5", "steps=60",
                                                              "curvature.every=0"])
    sync = _flushed(cfgs, tmp_path / "sync", monkeypatch, 1)
    windowed = _flushed(cfgs, tmp_path / "windowed", monkeypatch, 50)
    assert [r.status for r in sync] == [r.status for r in windowed] == ["diverged", "diverged"]
    assert read_summary(sync[0].run_dir)["diverged_at_step"] < 49  # inside the first window
    for a, b in zip(sync, windowed):
        _same_files(a.run_dir, b.run_dir)


def test_a_signal_inside_a_window_saves_the_steps_done_so_far(tmp_path, monkeypatch):
    from neuroscope import trainer as trainer_mod

    cfgs = members(["lr=0.05"], ["lr=0.1", "seed=3"], common=["steps=30", "curvature.every=0"])
    update = trainer_mod.Trainer._update

    def signal_at(n):
        calls = []

        def update_then_signal(self, grads, momentum, keep=None):
            update(self, grads, momentum, keep)
            calls.append(1)
            if len(calls) == n:
                os.kill(os.getpid(), signal.SIGINT)
        return update_then_signal

    monkeypatch.setattr(trainer_mod.Trainer, "_update", signal_at(12))
    sync = _flushed(cfgs, tmp_path / "sync", monkeypatch, 1)
    monkeypatch.setattr(trainer_mod.Trainer, "_update", signal_at(12))
    windowed = _flushed(cfgs, tmp_path / "windowed", monkeypatch, 8)
    assert [r.status for r in windowed] == ["interrupted", "interrupted"]
    for a, b in zip(sync, windowed):
        assert read_summary(b.run_dir)["steps_done"] == 11
        _same_files(a.run_dir, b.run_dir)

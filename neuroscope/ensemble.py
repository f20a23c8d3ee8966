"""Runs trained together as one ensemble: ``train_group`` builds every member's problem and
network under its own seed, stacks them (neuroscope.model, data.stack, losses.Objective), trains
them in one loop and leaves each member's folder exactly as ``run.run`` leaves one run's. A
single run is a group of one: ``run.run(cfg, dir)`` is ``train_group([cfg], [dir])[0]``.

Which configs may share a group is ``batching.batch_key``'s to say; ``batching.solo_reason``
names the settings that train only alone (the per-term curvature survey, reference=flow, the
live view, a custom ``model._target_``, resume=).
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from omegaconf import DictConfig
from torch import nn

from . import data as data_mod
from . import rundir as hist
from .batching import batch_key, solo_reason
from .checkpoint import check_resume_target, continue_run, save_checkpoint
from .config import Config, ConfigError
from .faults import fault_point
from .losses import Objective, build_pde
from .model import SoloEnsemble, StackedMLP
from .optimizers import build_rule
from .rundir import CHECKPOINT_PT, INTERRUPTED
from .run import (
    RunResult, RunSetup, _curvature_columns, check_space, _live_view, _log_start, _prepare_folder, _reference,
    _render_and_record, _save, _survey, _tracker, auto_threads, build_model, build_target, check_writable,
    locked_run_dir, output_error, resolve_device, seed_everything,
)
from .stopping import stop_on_signals
from .summary import log_outcome, make_summary
from .trainer import Trainer, TrainSettings, TrainState, frame_schedule, metric_columns

log = logging.getLogger("neuroscope")


@dataclass
class GroupSetup:
    """What a group trains: the stacked problem, the ensemble and its objective, and each
    member's own problem and plain network (``networks[e]``: the member's shape, for its files)."""

    device: torch.device
    dtype: torch.dtype
    problems: list[data_mod.Problem]
    problem: data_mod.Problem
    model: nn.Module
    objective: Objective
    networks: list[nn.Module]
    has_pde: bool
    time_dim: Optional[int] = None

    def member(self, e: int) -> RunSetup:
        """Member ``e`` as one run's setup (its problem and its network with its current weights)."""
        net = self.network(e)
        return RunSetup(self.device, self.dtype, self.problems[e], net, self.objective, self.has_pde, self.time_dim)

    def network(self, e: int) -> nn.Module:
        """Member ``e``'s plain network holding the member's current weights."""
        if isinstance(self.model, SoloEnsemble):
            return self.model.module
        self.networks[e].load_state_dict(self.model.member_state_dict(e))
        return self.networks[e]


def build_group(configs: Sequence[Config]) -> GroupSetup:
    """Every member's problem and initial network, seeded as its separate run's (``run.build``
    for one config), stacked into one ensemble."""
    first = configs[0]
    device, dtype = resolve_device(first.device)
    pde = build_pde(first.loss, first.input_dim)
    target = build_target(first.function)
    problems, networks = [], []
    for config in configs:
        seed_everything(config.seed)
        problems.append(data_mod.make(config, target, pde=pde, device=device, dtype=dtype))
        seed_everything(config.seed)  # the initial weights do not depend on how the data was sampled
        networks.append(build_model(config.model, config.input_dim).to(device=device, dtype=dtype))
    # one run trains its own network (nn.Linear's kernels); several MLPs (check_group: no custom model) stack
    model = StackedMLP(networks) if len(networks) > 1 else SoloEnsemble(networks[0])
    problem = data_mod.stack(problems)
    setup = GroupSetup(device, dtype, problems, problem, model, Objective([c.loss for c in configs], problem, pde),
                       networks, has_pde=pde is not None, time_dim=getattr(pde, "time_dim", None))
    n_params = sum(p.numel() for p in networks[0].parameters())
    p0 = problems[0]  # a step's forward passes: the training points and the test and generalization points
    threads = first.device.threads or auto_threads(device, n_params * len(configs), len(p0.train_x) + len(p0.test_x) + len(p0.gen_x))
    if threads:
        torch.set_num_threads(threads)
    return setup


def check_group(configs: Sequence[Config], run_dirs: Sequence[Path]) -> None:
    """One paragraph (ConfigError) when ``configs`` cannot train as one ensemble into ``run_dirs``."""
    if len(configs) != len(run_dirs) or not configs:
        raise ConfigError(f"train_group got {len(configs)} configs and {len(run_dirs)} run folders: give one folder per config "
                          "(and at least one config).")
    if len({d.resolve() for d in run_dirs}) != len(run_dirs):
        raise ConfigError(f"train_group got the same run folder twice among {', '.join(map(str, run_dirs))}: every member "
                          "needs a folder of its own, or their files would overwrite each other.")
    if len(configs) == 1:
        return
    for config, run_dir in zip(configs, run_dirs):
        why = solo_reason(config)
        if why:
            raise ConfigError(f"{run_dir}: {why} trains only as a run of its own, not in an ensemble of {len(configs)}. "
                              "Train it alone (run.run, or a group of one), or drop that setting.")
    key = batch_key(configs[0])
    for config, run_dir in zip(configs[1:], run_dirs[1:]):
        if batch_key(config) != key:
            from .batching import BATCHABLE

            raise ConfigError(
                f"{run_dir} cannot train in one ensemble with {run_dirs[0]}: their configs differ in more than the keys "
                f"that may differ inside a group ({', '.join(BATCHABLE)}), or have different loss terms switched on. "
                "Split them into groups with neuroscope.batching.group_by_key, or make them equal."
            )


FLUSH_EVERY = {"cuda": 10}
"""Steps whose numbers stay on the device between reads (``TrainSettings.flush_every``): on
CUDA a step's numbers are not read back one by one, which would wait for the GPU every step;
on the CPU reading them costs nothing, so each step is recorded as it is computed."""


def train_group(
    cfgs: Sequence[DictConfig | Config], run_dirs: Sequence[str | os.PathLike], *, render: bool = True,
    progress: Optional[bool] = None, overrides: Sequence[str] = (), configs_written: bool = False,
) -> list[RunResult]:
    """Train the runs ``cfgs`` as one ensemble, run e into ``run_dirs[e]``, each folder ending as
    ``run.run`` leaves it. A config with ``resume`` set continues that run (alone).
    ``configs_written``: each folder's ``.hydra/config.yaml`` is there already (a launcher's
    Hydra job folders), so it is not written again."""
    started = time.perf_counter()
    run_dirs = [Path(d) for d in run_dirs]
    from .checks import checked_config  # checks builds with run's functions

    configs = [checked_config(cfg, overrides) for cfg in cfgs]  # everything that can fail before training
    check_group(configs, run_dirs)
    src = Path(configs[0].resume) if configs[0].resume else None
    if src is not None:
        check_resume_target(src, run_dirs[0])  # before anything is written there
    for run_dir in run_dirs:
        check_writable(run_dir)
    with contextlib.ExitStack() as stack:
        for run_dir in run_dirs:
            stack.enter_context(locked_run_dir(run_dir))
        # signals are handled from here until every file is written: the first asks to stop and save
        received = stack.enter_context(stop_on_signals(run_dirs[0]))
        group = build_group(configs)
        states = _begin(configs, group, run_dirs, src, render, configs_written)
        try:
            statuses, states, histories = _train(configs, group, states, run_dirs, progress, received)
        except OSError as e:
            raise output_error(run_dirs[0], e, f"{hist.METRICS_CSV} keeps the rows recorded so far. ") from None
        results = [_finish(configs[e], group, e, run_dirs[e], statuses[e], states[e], histories[e], src, started, received, render)
                   for e in range(len(configs))]
        if render:  # every member's pictures at once, after every member's files are written
            _render_and_record([(r.run_dir, c, r.summary) for r, c in zip(results, configs)], started, received)
        signum = received()
    for r in results:
        r.exit_code = 128 + signum if signum else (128 + signal.SIGINT if r.status == INTERRUPTED else 0)
    return results


def _begin(configs: Sequence[Config], group: GroupSetup, run_dirs: Sequence[Path], src: Optional[Path],
           render: bool, configs_written: bool) -> list[TrainState]:
    """Every member's folder prepared (disk space checked for all before any is touched) and its
    state to start from: a fresh one, or the resumed run's."""
    for e, (config, run_dir) in enumerate(zip(configs, run_dirs)):
        check_space(run_dir, config, group.member(e), render)
    for e, (config, run_dir) in enumerate(zip(configs, run_dirs)):
        _prepare_folder(run_dir, config, group.member(e), src, render, configs_written)
    states = [TrainState() for _ in configs]
    if src is not None:  # a group of one: solo_reason keeps resume= out of larger groups
        net = group.network(0)
        states[0] = continue_run(src, configs[0], net, run_dirs[0])
        group.model.load_member_state_dict(0, net.state_dict())
    for e, (config, run_dir) in enumerate(zip(configs, run_dirs)):
        _log_start(run_dir, config, group.member(e))
    return states


def _train(
    configs: Sequence[Config], group: GroupSetup, states: list[TrainState], run_dirs: Sequence[Path],
    progress: Optional[bool], received: Callable[[], Optional[int]],
) -> tuple[list[str], list[TrainState], list[hist.History]]:
    """Run the trainer, streaming every member's metrics.csv, until done or ``received`` says a
    signal came; returns the members' statuses, final states and histories."""
    first = configs[0]
    names = group.objective.term_names
    wheres = [data_mod.picture_geometry(p, fitted="data" in names, time_dim=group.time_dim) for p in group.problems]
    survey = _survey(first, names)
    reference = _reference(first)
    columns = metric_columns(names, first.curvature.k) + _curvature_columns(first, survey) + (reference.columns if reference else [])
    settings = TrainSettings(
        lr=[float(c.lr) for c in configs], steps=int(first.steps),
        frame_steps=[frame_schedule(c.steps, c.viz.frames) for c in configs],
        curvature_every=int(first.curvature.every), checkpoint_every=int(first.checkpoint.every),
        diverge_above=[float(c.diverge_above) for c in configs],
        flush_every=FLUSH_EVERY.get(group.member(0).device.type, 1),
    )
    # a resumed run continues the rows continue_run copied (those below state.step)
    writers = [hist.MetricsWriter(d / hist.METRICS_CSV, columns, append=st.step > 0) for d, st in zip(run_dirs, states)]
    show = first.progress if progress is None else progress
    try:
        trainer = Trainer(
            model=group.model, problem=group.problem, objective=group.objective, writer=writers, settings=settings,
            tracker=_tracker(first, seeds=[c.seed for c in configs]), survey=survey, should_stop=lambda: received() is not None,
            on_frame=_live_view(first), on_checkpoint=lambda sts: _checkpoint(configs, group, sts, run_dirs, writers),
            progress=show, rule=build_rule(first.optimizer), reference=reference,
        )
        statuses, states = trainer.run_members(states, wheres)
    finally:
        for w in writers:
            w.close()
    hist.save_spectrum(trainer.spectrum(), run_dirs[0])
    return statuses, states, [trainer.history(st, where) for st, where in zip(states, wheres)]


def _checkpoint(configs: Sequence[Config], group: GroupSetup, states: Sequence[Optional[TrainState]],
                run_dirs: Sequence[Path], writers: Sequence[hist.MetricsWriter]) -> None:
    """A checkpoint of every training member, each written only once every row it covers is on disk."""
    for e, state in enumerate(states):
        if state is None:  # frozen: its folder keeps the checkpoint from before it diverged
            continue
        save_checkpoint(run_dirs[e] / CHECKPOINT_PT, group.network(e), state, config=configs[e], metrics_bytes=writers[e].sync())
    fault_point("after_checkpoint", next(s for s in states if s is not None).step)


def _finish(config: Config, group: GroupSetup, e: int, run_dir: Path, status: str, state: TrainState,
            history: hist.History, src: Optional[Path], started: float, received: Callable[[], Optional[int]],
            render: bool) -> RunResult:
    """Member ``e``'s summary and files (its pictures come after every member's): what ``run.run`` does after training."""
    setup = group.member(e)
    summary = make_summary(config, history, status, state, device=setup.device, n_params=setup.n_params,
                           members=group.model.members)
    if src is not None:
        summary["resumed_from"] = str(src)
    summary["render"] = "pending" if render else "off"
    try:
        _save(run_dir, history, setup.model, state, summary, started, received, config=config, status=status)
    except OSError as e:
        raise output_error(run_dir, e, f"{hist.METRICS_CSV} keeps the rows recorded so far; no partial file is left. ") from None
    history.meta = summary
    log_outcome(summary)
    return RunResult(run_dir=run_dir, status=status, history=history, summary=summary, model=setup.model)

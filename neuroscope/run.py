"""One run, end to end: build the problem, model and objective from the typed config, train,
and leave every file of the run in its directory (the CLI and the Python API both call ``run``).
"""
from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from . import data as data_mod
from . import rundir as hist
from .config import Config, ConfigError, DeviceConfig, DeviceType, FunctionConfig, ModelConfig, OutputError, resolve_target, to_config
from .losses import Objective, build_pde
from .optimizers import build_rule
from .checkpoint import continue_run, resume_config, save_checkpoint
from .rundir import CHECKPOINT_PT, CONFIG_YAML, INTERRUPTED, MODEL_PT
from .summary import edge_entries, log_outcome, make_summary
from .trainer import Trainer, TrainSettings, TrainState, frame_schedule, metric_columns

if TYPE_CHECKING:
    from .curvature import SharpnessTracker
    from .flow import GradientFlow

log = logging.getLogger("neuroscope")


@dataclass
class RunResult:
    run_dir: Path
    status: str
    history: hist.History
    summary: dict[str, Any]
    model: nn.Module
    exit_code: int = 0


@dataclass
class RunSetup:
    """What a run trains: built from its config, on its device."""

    device: torch.device
    dtype: torch.dtype
    problem: data_mod.Problem
    model: nn.Module
    objective: Objective
    has_pde: bool

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def resolve_device(cfg: DeviceConfig) -> tuple[torch.device, torch.dtype]:
    """The torch device and dtype ``device=...`` asks for; CUDA asked for but absent is a ConfigError."""
    dtype = getattr(torch, cfg.dtype.value)
    if cfg.type is DeviceType.cuda and not torch.cuda.is_available():
        raise ConfigError(
            f"device=cuda was asked for, but this torch ({torch.__version__}, CUDA build: {torch.version.cuda or 'none'}) "
            "sees no CUDA device. Use device=auto (CUDA when present, else CPU) or device=cpu, or install a CUDA build "
            "of torch (see README, TORCH_SPEC)."
        )
    if cfg.type is DeviceType.cpu or (cfg.type is DeviceType.auto and not torch.cuda.is_available()):
        return torch.device("cpu"), dtype
    return torch.device("cuda"), dtype


def build_target(cfg: FunctionConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """The target function with its params bound; checked on two points."""
    fn = resolve_target(cfg._target_, key="function._target_")
    if not callable(fn):
        raise ConfigError(f"function._target_={cfg._target_!r} is not callable: it must name a function f(x, **params) -> y.")
    params = dict(cfg.params)

    def target(x: torch.Tensor) -> torch.Tensor:
        return fn(x, **params)

    probe = torch.zeros(2, max(cfg.input_dims), dtype=torch.float64)
    try:
        y = target(probe[:, : min(cfg.input_dims)])
    except TypeError as e:
        raise ConfigError(
            f"function={cfg.name} ({cfg._target_}) does not accept function.params={params}: {e}. "
            "Its params must be keyword arguments of the function."
        ) from None
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != (2,):
        raise ConfigError(
            f"function={cfg.name} ({cfg._target_}) returned {type(y).__name__} of shape "
            f"{tuple(getattr(y, 'shape', ()))} for 2 points: a target function maps a tensor (n, input_dim) to a tensor (n,)."
        )
    return target


def build_model(cfg: ModelConfig, input_dim: int) -> nn.Module:
    """The network ``model._target_`` names, built from the model settings."""
    factory = resolve_target(cfg._target_, key="model._target_")
    return factory(input_dim=input_dim, width=cfg.width, depth=cfg.depth, activation=cfg.activation.value, bias=cfg.bias)


# Below this much work per forward pass (parameters x training points), the ops are too small
# to split across threads: one CPU thread is several times faster than two (bench_training_cost.py).
SMALL_PROBLEM = 5_000_000


def auto_threads(device: torch.device, n_params: int, n_points: int) -> int:
    """``device.threads=0``: one thread for small problems on the CPU, else torch's default (0)."""
    return 1 if device.type == "cpu" and n_params * n_points < SMALL_PROBLEM else 0


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_writable(run_dir: Path) -> None:
    """Fail before training, not after, when the run directory cannot take the run's files."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_probe"
        probe.write_bytes(b"\0" * 65536)
        probe.unlink()
    except OSError as e:
        raise output_error(run_dir, e) from None


def check_output_root(run_dir: Path) -> None:
    """Before Hydra makes ``run_dir``: its nearest existing ancestor must be a writable directory."""
    import tempfile

    ancestor = run_dir.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    try:
        if not ancestor.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(ancestor))
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as e:
        raise output_error(run_dir, e) from None


def output_error(where: Path, e: OSError) -> OutputError:
    return OutputError(
        f"Cannot write to {where} ({e.strerror or e}): NeuroScope keeps metrics, weights and pictures there. "
        "Choose a writable place with hydra.run.dir=PATH (CLI; hydra.sweep.dir=PATH for -m) or out_dir=PATH "
        "(Python API), or free some disk space."
    )


def build(config: Config) -> RunSetup:
    """The problem, model and objective of ``config``, seeded so a rerun gets the same ones."""
    device, dtype = resolve_device(config.device)
    seed_everything(config.seed)
    target = build_target(config.function)
    pde = build_pde(config.loss, config.input_dim)
    problem = data_mod.make(config, target, pde=pde, device=device, dtype=dtype)
    seed_everything(config.seed)  # the initial weights do not depend on how the data was sampled
    model = build_model(config.model, config.input_dim).to(device=device, dtype=dtype)
    setup = RunSetup(device, dtype, problem, model, Objective(config.loss, problem, pde), has_pde=pde is not None)
    threads = config.device.threads or auto_threads(device, setup.n_params, len(problem.train_x))
    if threads:
        torch.set_num_threads(threads)
    return setup


def geometry(setup: RunSetup, input_dim: int) -> hist.Geometry:
    """Where the run's fit is drawn: the plot grid, its target and the training points."""
    p = setup.problem
    fitted = "data" in setup.objective.term_names  # pure physics (no data term): no training points to draw
    return hist.Geometry(
        input_dim=input_dim,
        plot_x=data_mod.to_numpy(p.plot_x),
        plot_shape=p.plot_shape,
        plot_target=data_mod.to_numpy(p.plot_y),
        train_x=data_mod.to_numpy(p.train_x if fitted else p.train_x[:0]),
        train_y=data_mod.to_numpy(p.train_y if fitted else p.train_y[:0]),
        train_box=p.train_box,
        test_box=p.test_box,
    )


@contextlib.contextmanager
def stop_on_signals() -> Iterator[Callable[[], Optional[int]]]:
    """While active, SIGINT/SIGTERM ask the run to stop at the end of the current step;
    yields a function returning the signal number received (or None). A second signal
    stops at once."""
    received: list[int] = []

    def handler(signum, frame):
        if received:
            raise KeyboardInterrupt
        received.append(signum)

    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: received[0] if received else None
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run(
    cfg: DictConfig | Config, run_dir: str | os.PathLike, *, render: bool = True, progress: Optional[bool] = None,
    overrides: Sequence[str] = (),
) -> RunResult:
    """Train one run into ``run_dir``. With ``resume`` set, continue that run instead, changing
    only what ``overrides`` (the command line's) say."""
    started = time.perf_counter()
    run_dir = Path(run_dir)
    config = to_config(cfg)
    src = Path(config.resume) if config.resume else None
    if src is not None:
        config = resume_config(src, overrides)
    check_writable(run_dir)
    if src is not None or not (run_dir / CONFIG_YAML).exists():  # Hydra wrote it already for new CLI runs
        (run_dir / CONFIG_YAML).parent.mkdir(exist_ok=True)
        OmegaConf.save(OmegaConf.structured(config), run_dir / CONFIG_YAML)
    setup = build(config)
    state = continue_run(src, config, setup.model, run_dir) if src is not None else TrainState()
    _log_start(run_dir, config, setup)
    try:
        status, state, history, signum = _train(config, setup, state, run_dir, config.progress if progress is None else progress)
        summary = make_summary(config, history, status, state, device=setup.device, n_params=setup.n_params)
        if src is not None:
            summary["resumed_from"] = str(src)
        hist.save(history, run_dir)
        torch.save(setup.model.state_dict(), run_dir / MODEL_PT)
        save_checkpoint(run_dir / CHECKPOINT_PT, setup.model, state)
        summary["wall_seconds"] = time.perf_counter() - started
        hist.write_summary(run_dir, summary)
    except OSError as e:
        raise output_error(run_dir, e) from None
    history.meta = summary
    log_outcome(summary)
    if render:
        _render(run_dir, config)
        summary["wall_seconds"] = time.perf_counter() - started
        hist.write_summary(run_dir, summary)
    exit_code = 0 if status != INTERRUPTED else 128 + (signum or signal.SIGINT)
    return RunResult(run_dir=run_dir, status=status, history=history, summary=summary, model=setup.model, exit_code=exit_code)


def _train(
    config: Config, setup: RunSetup, state: TrainState, run_dir: Path, progress: bool
) -> tuple[str, TrainState, hist.History, Optional[int]]:
    """Run the trainer, streaming metrics.csv; returns the status, the final state, the
    history and the signal that stopped the run (or None)."""
    where = geometry(setup, config.input_dim)
    reference = _reference(config)
    columns = metric_columns(setup.objective.term_names, config.curvature.k) + (reference.columns if reference else [])
    settings = TrainSettings(
        lr=float(config.lr), steps=int(config.steps), frame_steps=frame_schedule(config.steps, config.viz.frames),
        curvature_every=int(config.curvature.every), checkpoint_every=int(config.checkpoint.every),
        diverge_above=config.diverge_above,
    )
    # a resumed run continues the rows continue_run copied (those below state.step)
    writer = hist.MetricsWriter(run_dir / hist.METRICS_CSV, columns, append=state.step > 0)
    with stop_on_signals() as received:
        trainer = Trainer(
            model=setup.model, problem=setup.problem, objective=setup.objective, writer=writer, settings=settings,
            tracker=_tracker(config), should_stop=lambda: received() is not None, on_frame=_live_view(config),
            on_checkpoint=lambda st: save_checkpoint(run_dir / CHECKPOINT_PT, setup.model, st), progress=progress,
            rule=build_rule(config.optimizer), reference=reference,
        )
        try:
            status, state = trainer.run(state, where)
        finally:
            writer.close()
        signum = received()
    return status, state, trainer.history(state, where), signum


def _tracker(config: Config) -> Optional["SharpnessTracker"]:
    """The sharpness tracker ``config.curvature`` asks for, or None when it is off."""
    c = config.curvature
    if c.every == 0:
        return None
    from .curvature import SharpnessTracker

    return SharpnessTracker(method=c.method.value, k=c.k, tol=c.tol, max_iter=c.max_iter, hvp=c.hvp.value, seed=config.seed)


def _reference(config: Config) -> Optional["GradientFlow"]:
    """The reference run ``config.reference`` asks for (with its own sharpness tracker), or None."""
    c = config.reference
    if c._target_ is None:
        return None
    factory = resolve_target(c._target_, key="reference._target_")
    return factory(rtol=c.rtol, atol=c.atol, max_substeps=c.max_substeps, tracker=_tracker(config))


def _log_start(run_dir: Path, config: Config, setup: RunSetup) -> None:
    p, names = setup.problem, setup.objective.term_names
    points = f"{len(p.train_x)} training points" if "data" in names else "no data term"
    if setup.has_pde:
        points += f", {len(p.collocation_x)} collocation and {len(p.boundary_x)} boundary points"
    log.info(
        "%s: %d params on %s/%s, %s, lr=%g (2/lr=%g), %d steps, objective: %s",
        run_dir, setup.n_params, setup.device, setup.dtype, points, config.lr, 2 / config.lr, config.steps, " + ".join(names),
    )


def _render(run_dir: Path, config: Config) -> None:
    """Draw the dashboard and animation; a drawing failure is logged, never loses the run."""
    try:
        from . import viz

        result = viz.render(run_dir, config.viz)
        log.info("dashboard: %s%s", result.png, f", animation: {result.video}" if result.video else "")
    except Exception as e:  # the run's data is already on disk
        log.error("rendering failed (%s: %s); the run's data is saved, re-render with: neuroscope-render %s", type(e).__name__, e, run_dir)


def _live_view(config: Config) -> Optional[Callable[[hist.History], None]]:
    if not config.viz.live:
        return None
    from . import viz

    ok, why = viz.live_view_available()
    if not ok:
        log.warning("viz.live=true: no display available (%s), live view skipped", why)
        return None
    meta = {"lr": config.lr, "steps": config.steps, "name": config.name, **edge_entries(config)}
    return viz.LiveDashboard(config.viz, meta=meta).update



"""One run, end to end: check the config, build the problem, model and objective, train,
and leave every file of the run in its directory (the CLI and the Python API both call ``run``).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from . import data as data_mod
from . import rundir as hist
from .config import Config, ConfigError, DeviceConfig, OutputError, DeviceType, FunctionConfig, ModelConfig, resolve_target, validate
from .losses import Objective, build_pde
from .trainer import (
    DIVERGED, INTERRUPTED, Trainer, TrainState, curvature_columns, load_checkpoint, metric_columns, save_checkpoint,
)

log = logging.getLogger("neuroscope")

MODEL_PT, CHECKPOINT_PT, CONFIG_YAML = hist.MODEL_PT, hist.CHECKPOINT_PT, hist.CONFIG_YAML


@dataclass
class RunResult:
    run_dir: Path
    status: str
    history: hist.History
    summary: dict[str, Any]
    model: nn.Module
    exit_code: int = 0


def to_config(cfg: DictConfig | Config) -> Config:
    """The typed config object, checked beyond types (see ``config.validate``)."""
    if isinstance(cfg, Config):
        config = cfg
    else:
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            raise ConfigError(
                f"{', '.join(missing)} must be given (the config leaves it as ???): set it on the command line, "
                f"e.g. {missing[0]}=mypackage.mymodule.myfunc for a _target_."
            )
        config = OmegaConf.to_object(cfg)
    validate(config)
    return config


def resolve_device(cfg: DeviceConfig) -> tuple[torch.device, torch.dtype]:
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
    factory = resolve_target(cfg._target_, key="model._target_")
    return factory(input_dim=input_dim, width=cfg.width, depth=cfg.depth, activation=cfg.activation.value, bias=cfg.bias)


# Below this much work per forward pass (parameters x training points), the ops are too small
# to split across threads: one CPU thread is several times faster than two (bench_training_cost.py).
SMALL_PROBLEM = 5_000_000


def auto_threads(device: torch.device, n_params: int, n_points: int) -> int:
    """``device.threads=0``: one thread for small problems on the CPU, else torch's default (0)."""
    return 1 if device.type == "cpu" and n_params * n_points < SMALL_PROBLEM else 0


def seed_everything(seed: int) -> None:
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


# What `neuroscope resume=RUN_DIR ...` may change; everything else comes from the run itself.
RESUMABLE_KEYS = ("steps", "viz", "progress", "checkpoint", "device.threads", "diverge_above", "resume")


def resume_config(resume_dir: str | os.PathLike, overrides: Sequence[str] = ()) -> Config:
    """The config of the run in ``resume_dir`` with ``overrides`` (steps, viz.*, ...) applied."""
    src = Path(resume_dir)
    if not (src / CHECKPOINT_PT).exists() or not (src / CONFIG_YAML).exists():
        raise ConfigError(
            f"resume={src} is not a run directory that can be resumed: it needs {CHECKPOINT_PT} and {CONFIG_YAML} "
            "(every finished or interrupted run writes them; a run killed without checkpoint.every has none)."
        )
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    bad = [k for k in keys if not any(k == r or k.startswith(r + ".") for r in RESUMABLE_KEYS)]
    if bad:
        raise ConfigError(
            f"resume continues a run with its own config, so {', '.join(bad)} cannot change; only "
            f"{', '.join(k for k in RESUMABLE_KEYS if k != 'resume')} (and viz.*, checkpoint.*) can."
        )
    merged = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.load(src / CONFIG_YAML))
    merged.merge_with(OmegaConf.from_dotlist([o.lstrip("+~") for o in overrides if not o.startswith("resume=")]))
    merged.resume = str(src)
    return to_config(merged)


def _restore(config: Config, state: TrainState, src: Path) -> TrainState:
    """Make a loaded TrainState continue to ``config.steps``; a finished run re-records its last row."""
    status = hist.read_summary(src).get("status")
    last = state.step - 1
    if status == DIVERGED:
        raise ConfigError(f"resume={src}: that run diverged at step {last}; there is nothing to continue. Start a new run.")
    if status == "finished":  # its last row had no update: record it again, with one
        if config.steps <= last:
            raise ConfigError(f"resume={src} finished at step {last}; give a larger steps (e.g. steps={2 * last}) to continue it.")
        state.metrics = {k: v[:last] for k, v in state.metrics.items()}
        if state.frame_steps and state.frame_steps[-1] == last:
            state.frame_steps, state.frame_pred = state.frame_steps[:-1], state.frame_pred[:-1]
        state.step = last
    elif config.steps < last:
        raise ConfigError(f"resume={src} already recorded step {last}; steps={config.steps} must be at least that.")
    return state


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
    device, dtype = resolve_device(config.device)
    seed_everything(config.seed)
    target = build_target(config.function)
    pde = build_pde(config.loss, config.input_dim)
    problem = data_mod.make(config, target, pde=pde, device=device, dtype=dtype)
    seed_everything(config.seed)
    model = build_model(config.model, config.input_dim).to(device=device, dtype=dtype)
    objective = Objective(config.loss, problem, pde)
    n_params = sum(p.numel() for p in model.parameters())
    threads = config.device.threads or auto_threads(device, n_params, len(problem.train_x))
    if threads:
        torch.set_num_threads(threads)
    geometry = hist.Geometry(
        input_dim=config.input_dim,
        plot_x=data_mod.to_numpy(problem.plot_x),
        plot_shape=problem.plot_shape,
        plot_target=data_mod.to_numpy(problem.plot_y),
        # Pure physics (no data term): no training points to draw.
        train_x=data_mod.to_numpy(problem.train_x if "data" in objective.term_names else problem.train_x[:0]),
        train_y=data_mod.to_numpy(problem.train_y if "data" in objective.term_names else problem.train_y[:0]),
        train_box=problem.train_box,
        test_box=problem.test_box,
    )
    columns = metric_columns(objective.term_names, config.curvature.k) + curvature_columns(config, objective.term_names)
    state = TrainState()
    if src is not None:
        weights, state = load_checkpoint(src / CHECKPOINT_PT)
        state = _restore(config, state, src)
        model.load_state_dict(weights)
        hist.copy_metric_rows(src / hist.METRICS_CSV, run_dir / hist.METRICS_CSV, below_step=state.step)
        log.info("resuming %s at step %d, to step %d", src, state.step, config.steps)
    points = f"{len(problem.train_x)} training points" if "data" in objective.term_names else "no data term"
    if pde is not None:
        points += f", {len(problem.collocation_x)} collocation and {len(problem.boundary_x)} boundary points"
    log.info(
        "%s: %d params on %s/%s, %s, lr=%g (2/lr=%g), %d steps, objective: %s",
        run_dir, n_params, device, dtype, points, config.lr, 2 / config.lr, config.steps,
        " + ".join(objective.term_names),
    )
    try:
        writer = hist.MetricsWriter(run_dir / hist.METRICS_CSV, columns, append=src is not None)
        with stop_on_signals() as received:
            trainer = Trainer(
                cfg=config, model=model, problem=problem, objective=objective, writer=writer,
                should_stop=lambda: received() is not None, on_frame=_live_view(config),
                on_checkpoint=lambda st: save_checkpoint(run_dir / CHECKPOINT_PT, model, st),
                progress=config.progress if progress is None else progress,
            )
            try:
                status, state = trainer.run(state, geometry)
            finally:
                writer.close()
            signum = received()
        history = trainer.history(state, geometry)
        summary = make_summary(config, history, status, state, device=device, n_params=n_params)
        if src is not None:
            summary["resumed_from"] = str(src)
        hist.save(history, run_dir)
        hist.save_spectrum(trainer.spectrum(), run_dir)
        torch.save(model.state_dict(), run_dir / MODEL_PT)
        save_checkpoint(run_dir / CHECKPOINT_PT, model, state)
        summary["wall_seconds"] = time.perf_counter() - started
        hist.write_summary(run_dir, summary)
    except OSError as e:
        raise output_error(run_dir, e) from None
    history.meta = summary
    log.info("%s after %d steps: loss %.4g, test error %.4g, gen error %.4g, sharpness %.4g (2/lr = %g)",
             status, summary["steps_done"], summary["final"]["loss"], summary["final"]["test_error"],
             summary["final"]["gen_error"], summary["final"]["sharpness"], 2 / config.lr)
    if summary["nonfinite"]:
        log.warning("non-finite values were recorded: %s (see metrics.csv)", summary["nonfinite"])
    if summary["curvature"]["not_converged"]:
        log.warning("%d curvature measurements did not converge to curvature.tol (eig_converged = 0 in metrics.csv)",
                    summary["curvature"]["not_converged"])
    if render:
        _render(run_dir, config)
        summary["wall_seconds"] = time.perf_counter() - started
        hist.write_summary(run_dir, summary)
    exit_code = 0 if status != INTERRUPTED else 128 + (signum or signal.SIGINT)
    return RunResult(run_dir=run_dir, status=status, history=history, summary=summary, model=model, exit_code=exit_code)


def _render(run_dir: Path, config: Config) -> None:
    """Draw the dashboard and animation; a drawing failure is logged, never loses the run."""
    try:
        from . import viz as plotting

        result = plotting.render(run_dir, config.viz)
        log.info("dashboard: %s%s", result.png, f", animation: {result.video}" if result.video else "")
    except Exception as e:  # the run's data is already on disk
        log.error("rendering failed (%s: %s); the run's data is saved, re-render with: neuroscope-render %s", type(e).__name__, e, run_dir)


def _live_view(config: Config) -> Optional[Callable[[hist.History], None]]:
    if not config.viz.live:
        return None
    from . import viz as plotting

    ok, why = plotting.live_view_available()
    if not ok:
        log.warning("viz.live=true: no display available (%s), live view skipped", why)
        return None
    return plotting.LiveDashboard(config.viz, meta={"lr": config.lr, "steps": config.steps, "name": config.name}).update


def make_summary(config: Config, history: hist.History, status: str, state: TrainState, *, device: torch.device, n_params: int) -> dict[str, Any]:
    m = history.metrics
    steps_done = int(m["step"][-1]) if len(m["step"]) else 0
    values = hist.summary_values(m, config.lr)
    measured = np.isfinite(m["sharpness"])
    return {
        "status": status,
        "name": config.name,
        "function": config.function.name,
        "loss": config.loss.name,
        "lr": config.lr,
        "two_over_lr": 2.0 / config.lr,
        "steps": config.steps,
        "steps_done": steps_done,
        "diverged_at_step": steps_done if status == DIVERGED else None,
        "input_dim": config.input_dim,
        "seed": config.seed,
        "n_params": n_params,
        "loss_terms": [c for c in m if c.startswith("loss_")],
        **values,
        "curvature": {
            "measurements": int(measured.sum()),
            "hvps_total": int(np.nansum(m["hvps"])) if "hvps" in m else 0,
            "not_converged": int(np.sum(m["eig_converged"] == 0)) if "eig_converged" in m else 0,
        },
        "nonfinite": dict(state.nonfinite),
        "train_seconds": state.train_seconds,
        "environment": environment(device, config),
    }


def environment(device: torch.device, config: Config) -> dict[str, Any]:
    import hydra
    import matplotlib
    import omegaconf

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "hydra": hydra.__version__,
        "omegaconf": omegaconf.__version__,
        "matplotlib": matplotlib.__version__,
        "platform": platform.platform(),
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "dtype": config.device.dtype.value,
        "threads": torch.get_num_threads(),
        "argv": sys.argv,
    }

"""One run, end to end: build the problem, model and objective from the typed config, train,
and leave every file of the run in its directory (the CLI and the Python API both call ``run``).
"""
from __future__ import annotations

import contextlib
import logging
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from . import data as data_mod
from . import rundir as hist
from .config import Config, ConfigError, DeviceConfig, DeviceType, FunctionConfig, ModelConfig, OutputError
from .targets import resolve_target
from .losses import Objective
from .checkpoint import config_yaml, save_checkpoint, write_torch
from .diskspace import check_free_space, estimate_run_bytes
from .faults import fault_point
from .params import check_keywords
from .rundir import CHECKPOINT_PT, CONFIG_YAML, INTERRUPTED, MODEL_PT
from .stopping import Interrupted, rendering, signal_name
from .summary import edge_entries
from .trainer import TrainState, frame_schedule, metric_columns

if TYPE_CHECKING:
    from .curvature import CurvatureSurvey, SharpnessTracker
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
    time_dim: Optional[int] = None  # the PDE's time input, if it has one

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


def build_target(cfg: FunctionConfig, probe: Optional[torch.Tensor] = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The target function with its params bound; checked on ``probe`` (n, input_dim), by
    default two points: it must accept its params and return n finite values."""
    fn = resolve_target(cfg._target_, key="function._target_", kind="function")
    params = dict(cfg.params)
    check_keywords(fn, params, key="function.params", target=cfg._target_, skip=1)

    def target(x: torch.Tensor) -> torch.Tensor:
        return fn(x, **params)

    x = torch.zeros(2, min(cfg.input_dims), dtype=torch.float64) if probe is None else probe
    where = f"function={cfg.name} ({cfg._target_})"
    try:
        y = target(x)
    except TypeError as e:
        raise ConfigError(
            f"{where} does not accept function.params={params}: {e}. Its params must be keyword arguments of the function."
        ) from None
    except Exception as e:
        raise ConfigError(f"{where} raised {type(e).__name__} ({' '.join(str(e).split())}) on {len(x)} points "
                          f"{x.tolist()}: a target function must work for every input of the test box.") from None
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != (len(x),):
        raise ConfigError(
            f"{where} returned {type(y).__name__} of shape {tuple(getattr(y, 'shape', ()))} for {len(x)} points: "
            "a target function maps a tensor (n, input_dim) to a tensor (n,) (not (n, 1), which would broadcast)."
        )
    if not torch.isfinite(y).all():
        raise ConfigError(f"{where} returned non-finite values {y.tolist()} at the points {x.tolist()}: the targets must be finite numbers.")
    return target


def build_model(cfg: ModelConfig, input_dim: int) -> nn.Module:
    """The network ``model._target_`` names, built from the model settings."""
    factory = resolve_target(cfg._target_, key="model._target_", kind="model")
    return factory(input_dim=input_dim, width=cfg.width, depth=cfg.depth, activation=cfg.activation.value, bias=cfg.bias)


# Below this much work per step (parameters x the points of a step's forward passes: training,
# test and generalization points; members x parameters for an ensemble), the ops are too small to
# split across threads: one CPU thread is faster than two (bench_training_cost.py). Above it two
# threads win: an ensemble of 64 default runs (17M) trains 1.31x faster on 2 threads, one of 16
# (4.3M) 0.95x (2 cores).
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
        with tempfile.TemporaryFile(dir=run_dir) as probe:  # a name of its own: two runs may probe at once
            probe.write(b"\0" * 65536)
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


def output_error(where: Path, e: OSError, kept: str = "") -> OutputError:
    return OutputError(
        f"Cannot write to {where} ({e.strerror or e}): NeuroScope keeps metrics, weights and pictures there. {kept}"
        "Choose a writable place with hydra.run.dir=PATH (CLI; hydra.sweep.dir=PATH for -m) or out_dir=PATH "
        "(Python API), or free some disk space."
    )


@contextlib.contextmanager
def locked_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the whole run: a second run into the same folder is refused."""
    try:
        lock = hist.lock_run_dir(run_dir)
    except BlockingIOError:
        raise busy_error(run_dir, (run_dir / hist.LOCK_FILE).read_text().strip() or "?") from None
    except OSError as e:
        raise output_error(run_dir, e) from None
    with lock:
        yield


def busy_error(run_dir: Path, pid: str) -> OutputError:
    return OutputError(
        f"{run_dir} is in use: another NeuroScope run (process {pid}) is writing into it, and two runs in one "
        "folder would overwrite each other's files. Wait for it to end, or choose another folder with "
        "hydra.run.dir=PATH (CLI) or out_dir=PATH (Python API)."
    )


def build(config: Config) -> RunSetup:
    """The problem, model and objective of ``config``, seeded so a rerun gets the same ones: an
    ensemble of one (``ensemble.build_group``), its problem stacked, its model a StackedMLP."""
    from .ensemble import build_group

    g = build_group([config])
    return RunSetup(g.device, g.dtype, g.problem, g.model, g.objective, has_pde=g.has_pde, time_dim=g.time_dim)


def run(
    cfg: DictConfig | Config, run_dir: str | os.PathLike, *, render: bool = True, progress: Optional[bool] = None,
    overrides: Sequence[str] = (),
) -> RunResult:
    """Train one run into ``run_dir``: an ensemble of one (``ensemble.train_group``). With
    ``resume`` set, continue that run instead, changing only what ``overrides`` (the command
    line's) say."""
    from .ensemble import train_group

    return train_group([cfg], [run_dir], render=render, progress=progress, overrides=overrides)[0]


def check_space(run_dir: Path, config: Config, setup: RunSetup, render: bool) -> None:
    """Refuse (OutputError) when the disk under ``run_dir`` cannot take the run's files."""
    frames = len(frame_schedule(config.steps, config.viz.frames))
    columns = metric_columns(setup.objective.term_names, config.curvature.k)
    estimate = estimate_run_bytes(
        n_params=setup.n_params, dtype_bytes=torch.finfo(setup.dtype).bits // 8, steps=config.steps,
        n_columns=len(columns), frames=frames, plot_points=len(setup.problem.plot_x), viz=config.viz, pictures=render,
    )
    check_free_space(run_dir, estimate)


def _prepare_folder(run_dir: Path, config: Config, setup: RunSetup, src: Optional[Path], render: bool,
                    config_written: bool = False) -> None:
    """Before training: refuse when the disk cannot take the run, remove an earlier run's files
    (the folder then holds one run only), and write the config this run trains with (unless
    Hydra wrote it: ``config_written``, or the folder is this Hydra job's)."""
    check_space(run_dir, config, setup, render)
    if src is None or src.resolve() != run_dir.resolve():  # resuming in place continues the files there
        stale = hist.stale_run_files(run_dir)
        for path in stale:
            path.unlink()
        if stale:
            log.warning("%s held files of an earlier run; removed them: %s", run_dir, ", ".join(p.name for p in stale))
    if src is not None or not (config_written or _hydra_wrote_config(run_dir)):
        (run_dir / CONFIG_YAML).parent.mkdir(exist_ok=True)
        hist.write_atomic(run_dir / CONFIG_YAML, config_yaml(config))


def _hydra_wrote_config(run_dir: Path) -> bool:
    """Whether Hydra made ``run_dir`` for this run (and wrote its config there)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and Path(HydraConfig.get().runtime.output_dir).resolve() == run_dir.resolve()


def _save(run_dir: Path, history: hist.History, model: nn.Module, state: TrainState, summary: dict[str, Any],
          started: float, received: Callable[[], Optional[int]], *, config: Config, status: str) -> None:
    """Every file of the run, each written atomically. The final checkpoint comes last: until it
    replaces the latest periodic one, that one still resumes to the same rows (the summary,
    written just before it, names a signal that came while the files were written)."""
    hist.save(history, run_dir)
    fault_point("final_save", "history")
    write_torch(run_dir / MODEL_PT, model.state_dict())
    fault_point("final_save", "model")
    _write_summary(run_dir, summary, started, received())
    fault_point("final_save", "summary")
    metrics_bytes = (run_dir / hist.METRICS_CSV).stat().st_size  # the writer fsynced it on close
    save_checkpoint(run_dir / CHECKPOINT_PT, model, state, config=config, metrics_bytes=metrics_bytes, status=status)


def _write_summary(run_dir: Path, summary: dict[str, Any], started: float, signum: Optional[int]) -> None:
    summary["signal"] = signal_name(signum)
    summary["wall_seconds"] = time.perf_counter() - started
    hist.write_summary(run_dir, summary)


def _render_and_record(runs: Sequence[tuple[Path, Config, dict[str, Any]]], started: float,
                       received: Callable[[], Optional[int]]) -> None:
    """Render each ``(run_dir, config, summary)`` (one run here; several with ``viz.render_many``,
    in worker processes where cores are idle) and say in each summary how it went: done, failed
    or interrupted (a first signal stops the rendering; a run's status stays what training made it)."""
    try:
        if len(runs) == 1:
            outcomes = [_render(runs[0][0], runs[0][1])]
        else:
            with rendering():
                from . import viz

                outcomes = viz.render_many([run_dir for run_dir, _, _ in runs])
    except Interrupted as e:
        log.warning("rendering interrupted (%s); the runs' data is saved, re-render with: neuroscope-render %s",
                    signal_name(e.signum), " ".join(str(run_dir) for run_dir, _, _ in runs))
        for run_dir, _, summary in runs:
            summary["render"] = INTERRUPTED
            with contextlib.suppress(OSError):
                _write_summary(run_dir, summary, started, received())
        if e.at_once:
            raise
        return
    for (run_dir, _, summary), outcome in zip(runs, outcomes):
        summary["render"] = outcome
        try:
            _write_summary(run_dir, summary, started, received())
        except OSError as e:
            raise output_error(run_dir, e) from None


def _tracker(config: Config, seeds: Optional[Sequence[int]] = None) -> Optional["SharpnessTracker"]:
    """The sharpness tracker ``config.curvature`` asks for, or None when it is off; with
    ``seeds``, an ensemble's (one member per seed)."""
    c = config.curvature
    if c.every == 0:
        return None
    from .curvature import SharpnessTracker

    return SharpnessTracker(method=c.method.value, k=c.k, tol=c.tol, max_iter=c.max_iter, hvp=c.hvp.value,
                            seed=config.seed if seeds is None else list(seeds), bottom=c.lambda_min,
                            members=1 if seeds is None else len(seeds))


def _survey(config: Config, term_names: Sequence[str]) -> Optional["CurvatureSurvey"]:
    """The CurvatureSurvey ``config.curvature`` asks for, or None (the default: none asked)."""
    c, d = config.curvature, config.curvature.density
    if not (c.terms or c.ggn or c.trace_probes or d.every):
        return None
    from .curvature import CurvatureSurvey, DensityGrid

    density = DensityGrid(every=d.every, probes=d.probes, steps=d.steps, sigma=d.sigma, points=d.points,
                          linthresh=d.linthresh, lambda_max=d.lambda_max) if d.every else None
    return CurvatureSurvey(
        every=c.every, terms=list(term_names) if c.terms else [], ggn=c.ggn, trace_probes=c.trace_probes,
        trace_every=c.trace_every or c.every, density=density, tol=c.tol, max_iter=c.max_iter, seed=config.seed,
    )


def _curvature_columns(config: Config, survey: Optional["CurvatureSurvey"]) -> list[str]:
    """The metric columns the optional curvature settings add after ``metric_columns`` (none by default)."""
    from .curvature import BOTTOM_COLUMNS

    return (list(BOTTOM_COLUMNS) if config.curvature.lambda_min else []) + (survey.columns() if survey else [])


def _reference(config: Config) -> Optional["GradientFlow"]:
    """The reference run ``config.reference`` asks for (with its own sharpness tracker), or None."""
    c = config.reference
    if c._target_ is None:
        return None
    factory = resolve_target(c._target_, key="reference._target_", kind="reference")
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


def _render(run_dir: Path, config: Config) -> str:
    """Draw the dashboard and animation: "done", or "failed" (logged: a drawing failure never
    loses the run). A signal ends it with :class:`Interrupted`."""
    try:
        with rendering():  # from the import on (matplotlib takes 0.2-2 s): a signal now stops the rendering
            from . import viz

            result = viz.render(run_dir, config.viz)
        log.info("dashboard: %s%s", result.png, f", animation: {result.video}" if result.video else "")
        return "done"
    except Exception as e:  # the run's data is already on disk
        log.error("rendering failed (%s: %s); the run's data is saved, re-render with: neuroscope-render %s", type(e).__name__, e, run_dir)
        return "failed"


def _live_view(config: Config) -> Optional[Callable[[hist.History], None]]:
    if not config.viz.live:
        return None
    from . import viz

    ok, why = viz.live_view_available()
    if not ok:
        log.warning("viz.live=true: no display available (%s), live view skipped", why)
        return None
    header = {"width": config.model.width, "depth": config.model.depth, "activation": getattr(config.model.activation, "value", config.model.activation),
              "k": config.curvature.k, **edge_entries(config)}
    return viz.LiveDashboard(config.viz, meta={"lr": config.lr, "steps": config.steps, "name": config.name,
                                               **header}).update



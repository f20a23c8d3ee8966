"""Where sweep summaries are made: :func:`summarize`, the Hydra callback that records each
launched job and summarizes the sweep when it ends, the number an optimizing sweeper is
told (:func:`objective_value`), and the ``neuroscope-summary`` command."""
from __future__ import annotations

import argparse
import atexit
import logging
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from hydra.experimental.callback import Callback
from hydra.types import RunMode, TaskFunction
from omegaconf import DictConfig

from .. import stopping
from ..config import UserError
from ..rundir import DIVERGED, INTERRUPTED, SUMMARY_CSV, SWEEP_PNG
from .jobs import Launch, as_number, load_sweep, write_launch
from .seeds import by_seed_name, seed_swept, write_by_seed
from .table import SweepResult, describe, format_table, write_table

log = logging.getLogger("neuroscope")

# What an optimizing sweeper (Optuna) is told for a diverged run or a non-finite metric: a
# finite number worse than any real error, so the trial counts as a bad one, not a failure.
DIVERGED_OBJECTIVE = 1e10


def summarize(sweep_dir: str | os.PathLike, *, plot: bool = True) -> SweepResult:
    """Write ``summary.csv``, ``summary_by_<keys>.csv`` when the seed is swept with other keys,
    and (with ``plot``) ``sweep.png`` into the sweep folder."""
    sweep = load_sweep(sweep_dir)
    csv_path = write_table(sweep, sweep.sweep_dir / SUMMARY_CSV)
    by_seed = write_by_seed(sweep, sweep.sweep_dir / by_seed_name(sweep)) if seed_swept(sweep) else None
    if plot:
        from .figure import plot_sweep  # matplotlib only when a sweep is drawn

    png = plot_sweep(sweep, sweep.sweep_dir / SWEEP_PNG) if plot else None
    return SweepResult(sweep=sweep, csv=csv_path, png=png, by_seed=by_seed)


def objective_value(summary: Mapping[str, Any], metric: str = "gen_error", *, penalty: float = DIVERGED_OBJECTIVE) -> float:
    """What the task function returns for sweepers that optimize (Optuna): the run's final
    ``metric`` (a key of ``summary['final']``); ``penalty``, a finite number worse than any real
    error, when the run diverged or the metric is not finite."""
    value = as_number(summary.get("final", {}).get(metric))
    if summary.get("status") == DIVERGED or value is None or not math.isfinite(value):
        return float(penalty)
    return value


class SweepSummary(Callback):
    """Hydra callback: records each job of a multirun as it starts (``.jobs/<num>.yaml`` in the
    sweep folder, so a job whose folder is gone is reported missing), and writes the sweep
    summary when the multirun ends, and also when it ends badly (a failed job, Ctrl-C), from
    an exit hook. Nothing it does can change a job's or the sweep's outcome: a record or a
    summary that cannot be written is logged.

    Signals: it makes the parent process stop the sweep the way a run stops (stopping.guard_sweep):
    every running job ends ``interrupted`` with its files, the jobs still to come in a process
    that got the signal end at once the same way, the summary is written, and the sweep exits
    with 130 (SIGINT) or 143 (SIGTERM)."""

    def __init__(self, plot: bool = True) -> None:
        self.plot = plot
        self._pending: Optional[str] = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._pending = str(config.hydra.sweep.dir)
        atexit.register(self._at_exit)
        stopping.guard_sweep(Path(self._pending))

    def on_job_start(self, config: DictConfig, *, task_function: TaskFunction, **kwargs: Any) -> None:
        # Runs where the job runs: in a launcher's worker process (joblib, submitit), where this
        # object is a copy that saw no on_multirun_start, so all it needs comes from ``config``.
        try:
            if config.hydra.mode != RunMode.MULTIRUN:
                return
            sweep_dir = Path(config.hydra.sweep.dir).absolute()
            stopping.in_sweep(sweep_dir)
            folder = Path(config.hydra.runtime.output_dir).absolute()
            name = str(folder.relative_to(sweep_dir)) if folder.is_relative_to(sweep_dir) else folder.name
            write_launch(sweep_dir, Launch(num=int(config.hydra.job.num), folder=name,
                                           overrides=[str(o) for o in config.hydra.overrides.task]))
        except Exception as e:
            log.warning("cannot record the start of this job for the sweep summary (%s: %s)", type(e).__name__, e)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._pending = None
        result = self._write(str(config.hydra.sweep.dir))
        interrupted = result is not None and any(j.status == INTERRUPTED for j in result.sweep.jobs)
        signum = stopping.sweep_signal() or (signal.SIGINT if interrupted else None)
        if signum:  # the jobs returned (a launcher must not kill jobs still saving); the sweep did not finish
            log.warning("the sweep was interrupted (%s); every job's files are kept", stopping.signal_name(signum))
            sys.exit(128 + signum)

    def _at_exit(self) -> None:
        if self._pending is not None and Path(self._pending).is_dir():
            sweep_dir, self._pending = self._pending, None
            self._write(sweep_dir)

    def _write(self, sweep_dir: str) -> Optional[SweepResult]:
        try:
            result = summarize(sweep_dir, plot=self.plot)
        except Exception as e:
            log.error("sweep summary failed (%s: %s); retry with: neuroscope-summary %s", type(e).__name__, e, sweep_dir)
            return None
        text = describe(result)
        log.info("%s", text)
        if not logging.getLogger().handlers:  # at exit, logging may already be shut down
            print(text, file=sys.stderr)
        return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``neuroscope-summary SWEEP_DIR [--no-plot]``: exit status 2 for a folder that is no sweep."""
    parser = argparse.ArgumentParser(
        prog="neuroscope-summary",
        description="Summarize a NeuroScope sweep (a Hydra multirun folder): write summary.csv (a row per job) "
        "and sweep.png (sharpness against 2/lr, loss, final errors against the swept value) into it.",
    )
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR", help="e.g. outputs/multirun/2026-11-26/12-00-00")
    parser.add_argument("--no-plot", action="store_true", help="write summary.csv only")
    args = parser.parse_args(argv)
    try:
        result = summarize(args.sweep_dir, plot=not args.no_plot)
    except (FileNotFoundError, UserError) as e:
        print(f"neuroscope-summary: error: {e}", file=sys.stderr)
        return 2
    print(format_table(result.sweep))
    print(describe(result))
    return 0

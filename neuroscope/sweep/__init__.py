"""Sweep summaries: one table (``summary.csv``) and one figure (``sweep.png``) for a Hydra
multirun folder, drawn from the jobs' files alone, so a sweep with a diverged, failed,
killed or deleted job can still be summarized.

Written by :class:`SweepSummary`, a Hydra callback (``hydra.callbacks.sweep_summary`` in
``conf/config.yaml``) when a multirun ends, and on demand with ``neuroscope-summary
SWEEP_DIR`` (or ``python -m neuroscope.sweep SWEEP_DIR``). ``jobs`` reads the folder,
``table`` and ``figure`` draw it, ``callback`` holds the entry points.

``figure`` (matplotlib) is imported when first used: Hydra imports this package for its
callback in every run, single ones included, long before (or without) a sweep is drawn.
"""
from ..rundir import DIVERGED, FAILED, FINISHED, INTERRUPTED, MISSING, SUMMARY_CSV, SWEEP_PNG
from .callback import DIVERGED_OBJECTIVE, SweepSummary, main, objective_value, summarize
from .jobs import Job, Launch, Sweep, load_sweep, read_launches, swept_keys
from .table import SweepResult, describe, format_table, write_table

__all__ = [
    "DIVERGED", "FAILED", "FINISHED", "INTERRUPTED", "MISSING", "SUMMARY_CSV", "SWEEP_PNG",
    "DIVERGED_OBJECTIVE", "SweepSummary", "main", "objective_value", "summarize",
    "draw_sweep", "plot_sweep", "Job", "Launch", "Sweep", "load_sweep", "read_launches", "swept_keys",
    "SweepResult", "describe", "format_table", "write_table",
]


def __getattr__(name: str):  # draw_sweep, plot_sweep: imported on first use (PEP 562)
    if name in ("draw_sweep", "plot_sweep"):
        from . import figure

        return getattr(figure, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

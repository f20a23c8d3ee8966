"""Sweep summaries: one table (``summary.csv``) and one figure (``sweep.png``) for a Hydra
multirun folder, drawn from the jobs' files alone, so a sweep with a diverged, failed,
killed or deleted job can still be summarized.

Written by :class:`SweepSummary`, a Hydra callback (``hydra.callbacks.sweep_summary`` in
``conf/config.yaml``) when a multirun ends, and on demand with
``neuroscope-summary SWEEP_DIR`` (or ``python -m neuroscope.sweep SWEEP_DIR``).

Job statuses: ``finished``, ``diverged``, ``interrupted`` (from the job's summary.json);
``failed`` (the job folder exists but has no summary.json: it crashed, was killed, or is
still running; its metrics come from whatever metrics.csv holds); ``missing`` (a job that
multirun.yaml says was launched has no folder).
"""
from __future__ import annotations

import argparse
import atexit
import csv
import logging
import math
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from . import rundir as hist

try:  # hydra is a dependency; the fallback only keeps this module importable on its own
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[misc,assignment]

log = logging.getLogger("neuroscope")

SUMMARY_CSV = "summary.csv"
SWEEP_PNG = "sweep.png"
MULTIRUN_YAML = "multirun.yaml"
HYDRA_DIR = ".hydra"

from .rundir import DIVERGED, FAILED, FINISHED, INTERRUPTED, MISSING  # noqa: E402
from .viz.style import COLORS  # noqa: E402

# What an optimizing sweeper (Optuna) is told for a diverged run or a non-finite metric: a
# finite number worse than any real error, so the trial counts as a bad one, not a failure.
DIVERGED_OBJECTIVE = 1e10

METRIC_COLUMNS = [
    "final_loss", "final_test_error", "final_gen_error", "final_sharpness",
    "max_sharpness", "late_sharpness_over_edge",
]


@dataclass
class Job:
    """One job of a sweep, as far as its files (or multirun.yaml) tell."""

    num: Optional[int]
    name: str  # the folder name; for a missing job, ``<num>_<swept overrides>``
    overrides: dict[str, str]  # every task override of the job, key -> value as typed
    status: str
    run_dir: Optional[Path]
    lr: float = math.nan
    steps: Optional[int] = None  # configured
    steps_done: Optional[int] = None
    wall_seconds: Optional[float] = None
    values: dict[str, float] = field(default_factory=dict)  # METRIC_COLUMNS
    metrics: dict[str, np.ndarray] = field(default_factory=dict)  # metrics.csv columns
    note: str = ""


@dataclass
class Sweep:
    sweep_dir: Path
    swept_keys: list[str]
    jobs: list[Job]
    fixed: list[str] = field(default_factory=list)  # overrides common to every job, as typed

    @property
    def missing(self) -> list[Job]:
        return [j for j in self.jobs if j.status == MISSING]

    def counts(self) -> dict[str, int]:
        return dict(Counter(j.status for j in self.jobs))


@dataclass
class SweepResult:
    sweep: Sweep
    csv: Path
    png: Optional[Path]


# ---------------------------------------------------------------------------------------
# Reading a sweep folder


def _to_float(value: Any) -> float:
    """summary.json stores non-finite floats as strings ('nan', 'inf')."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _as_number(value: Any) -> Optional[float]:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _split_override(line: str) -> tuple[str, str]:
    key, _, value = line.partition("=")
    return key.lstrip("+~"), value


def _load_yaml(path: Path) -> Any:
    from omegaconf import OmegaConf

    try:
        return OmegaConf.load(path)
    except Exception as e:
        log.warning("cannot read %s (%s: %s)", path, type(e).__name__, e)
        return None


def expected_jobs(multirun: Any) -> tuple[Optional[list[list[str]]], list[str]]:
    """The jobs a basic-sweeper multirun launched, in order (each a list of 'key=value'),
    and the swept keys, from the sweep's ``multirun.yaml``. ``(None, keys)`` for other
    sweepers (Optuna chooses its jobs as it goes), with the keys of ``hydra.sweeper.params``."""
    from omegaconf import OmegaConf

    sweeper = OmegaConf.select(multirun, "hydra.sweeper", default=None)
    params = OmegaConf.select(multirun, "hydra.sweeper.params", default=None) or {}
    task = list(OmegaConf.select(multirun, "hydra.overrides.task", default=None) or [])
    target = str(OmegaConf.select(sweeper, "_target_", default="")) if sweeper is not None else ""
    if not target.endswith("BasicSweeper"):
        return None, [str(k) for k in params]
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        lines = [f"{k}={v}" for k, v in params.items()] + [str(t) for t in task]
        parsed = OverridesParser.create().parse_overrides(lines)
        final = {}
        for o in parsed:  # later overrides of a key win, as in the sweeper
            final[o.get_key_element()] = o
        swept = [k.lstrip("+~") for k, o in final.items() if o.is_sweep_override()]  # '+key' adds key
        jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
        return jobs, swept
    except Exception as e:  # a sweep syntax this reader does not know: fall back to the folders
        log.warning("cannot expand the sweep in multirun.yaml (%s: %s); reporting the job folders found", type(e).__name__, e)
        return None, []


def _job_folders(sweep_dir: Path) -> list[Path]:
    found = []
    for p in sorted(sweep_dir.iterdir()):
        if p.is_dir() and not p.name.startswith(".") and any(
            (p / f).exists() for f in (HYDRA_DIR, hist.METRICS_CSV, hist.SUMMARY_JSON)
        ):
            found.append(p)
    return found


def _job_num(folder: Path, hydra_yaml: Any) -> Optional[int]:
    from omegaconf import OmegaConf

    if hydra_yaml is not None:
        num = OmegaConf.select(hydra_yaml, "hydra.job.num", default=None)
        if isinstance(num, int):
            return num
    m = re.match(r"(\d+)(_|$)", folder.name)
    return int(m.group(1)) if m else None


def _last_error(folder: Path) -> str:
    """The last ERROR line of the job's log, if any (why a job failed)."""
    for log_file in sorted(folder.glob("*.log")):
        try:
            lines = [ln for ln in log_file.read_text(errors="replace").splitlines() if "[ERROR]" in ln]
        except OSError:
            continue
        if lines:
            return lines[-1].split("[ERROR]", 1)[1].lstrip(" -")[:300]
    return ""


def metrics_values(metrics: Mapping[str, np.ndarray], lr: float) -> dict[str, float]:
    """METRIC_COLUMNS from a metrics table, as a run's summary defines them (``hist.summary_values``)."""
    values = hist.summary_values(metrics, lr)
    row = {f"final_{k}": v for k, v in values["final"].items()}
    row.update(max_sharpness=values["max_sharpness"], late_sharpness_over_edge=values["late_sharpness_over_edge"])
    return row


def _read_job(folder: Path, expected: Optional[list[str]]) -> Job:
    hydra_dir = folder / HYDRA_DIR
    hydra_yaml = _load_yaml(hydra_dir / "hydra.yaml") if (hydra_dir / "hydra.yaml").exists() else None
    overrides_file = hydra_dir / "overrides.yaml"
    lines: list[str] = []
    if overrides_file.exists():
        loaded = _load_yaml(overrides_file)
        lines = [str(x) for x in loaded] if loaded is not None else []
    elif expected is not None:
        lines = list(expected)
    job = Job(num=_job_num(folder, hydra_yaml), name=folder.name, overrides=dict(_split_override(x) for x in lines),
              status=FAILED, run_dir=folder)
    summary = hist.read_summary(folder) if (folder / hist.SUMMARY_JSON).exists() else {}
    config = _load_yaml(hydra_dir / "config.yaml") if (hydra_dir / "config.yaml").exists() else None
    if (folder / hist.METRICS_CSV).exists():
        try:
            job.metrics = hist.read_metrics_csv(folder / hist.METRICS_CSV)
        except Exception as e:
            job.note = f"metrics.csv unreadable ({type(e).__name__}: {e})"
    job.lr = _to_float(summary.get("lr", _select(config, "lr")))
    if math.isnan(job.lr) and "lr" in job.overrides:
        job.lr = _to_float(job.overrides["lr"])
    steps = summary.get("steps", _select(config, "steps"))
    job.steps = int(steps) if steps is not None else None
    if summary:
        job.status = str(summary.get("status", FAILED))
        final = summary.get("final", {})
        job.values = {f"final_{k}": _to_float(final.get(k)) for k in ("loss", "test_error", "gen_error", "sharpness")}
        job.values["max_sharpness"] = _to_float(summary.get("max_sharpness"))
        job.values["late_sharpness_over_edge"] = _to_float(summary.get("late_sharpness_over_edge"))
        job.steps_done = int(summary["steps_done"]) if "steps_done" in summary else None
        job.wall_seconds = _to_float(summary.get("wall_seconds"))
        if job.status == DIVERGED:
            job.note = f"diverged at step {summary.get('diverged_at_step', job.steps_done)}"
        elif job.status == INTERRUPTED:
            job.note = f"interrupted after step {job.steps_done}"
    else:
        job.values = metrics_values(job.metrics, job.lr)
        done = len(job.metrics.get("step", []))
        job.steps_done = int(job.metrics["step"][-1]) if done else None
        why = _last_error(folder)
        job.note = job.note or (
            f"no summary.json (crashed, killed or still running); metrics.csv has {done} rows" if done
            else "no summary.json and no metrics (the job stopped before its first step)"
        ) + (f"; log: {why}" if why else "")
    return job


def load_sweep(sweep_dir: str | os.PathLike) -> Sweep:
    """Everything a summary needs from a multirun folder: its jobs, expected and found."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir} is not a directory: give a multirun folder, e.g. outputs/multirun/<date>/<time>.")
    multirun = _load_yaml(sweep_dir / MULTIRUN_YAML) if (sweep_dir / MULTIRUN_YAML).exists() else None
    expected, swept = expected_jobs(multirun) if multirun is not None else (None, [])
    folders = _job_folders(sweep_dir)
    if multirun is None and not folders:
        inner = sorted(p.parent for p in sweep_dir.glob(f"*/{MULTIRUN_YAML}"))
        hint = f" Sweeps inside it: {', '.join(str(p) for p in inner)}." if inner else ""
        raise FileNotFoundError(
            f"{sweep_dir} holds no {MULTIRUN_YAML} and no job folders: it is not a sweep folder "
            f"(neuroscope -m ... writes them under outputs/multirun/<date>/<time>).{hint}"
        )
    jobs: list[Job] = []
    seen: set[int] = set()
    for folder in folders:
        num = _job_num(folder, None)
        job = _read_job(folder, expected[num] if expected is not None and num is not None and num < len(expected) else None)
        jobs.append(job)
        if job.num is not None:
            seen.add(job.num)
    if expected is not None:
        for num, lines in enumerate(expected):
            if num in seen:
                continue
            overrides = dict(_split_override(x) for x in lines)
            label = ",".join(f"{k}={overrides[k]}" for k in swept if k in overrides)
            lr = _to_float(overrides.get("lr", _select(multirun, "lr")))
            steps = _as_number(overrides.get("steps", _select(multirun, "steps")))
            jobs.append(Job(num=num, name=f"{num}_{label}" if label else str(num), overrides=overrides, status=MISSING,
                            run_dir=None, lr=lr, steps=int(steps) if steps is not None else None,
                            values={c: math.nan for c in METRIC_COLUMNS}, note="job folder not found"))
    jobs.sort(key=lambda j: (j.num is None, j.num if j.num is not None else 0, j.name))
    if not swept:  # not known from multirun.yaml: the keys whose values differ between jobs
        keys = list(dict.fromkeys(k for j in jobs for k in j.overrides))
        swept = [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]
    fixed_keys = [k for k in dict.fromkeys(k for j in jobs for k in j.overrides) if k not in swept]
    fixed = [f"{k}={jobs[0].overrides[k]}" for k in fixed_keys
             if all(j.overrides.get(k) == jobs[0].overrides.get(k) for j in jobs)]
    return Sweep(sweep_dir=sweep_dir, swept_keys=swept, jobs=jobs, fixed=fixed)


def _select(cfg: Any, key: str) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key, default=None) if cfg is not None else None


# ---------------------------------------------------------------------------------------
# The table


def table_columns(sweep: Sweep) -> list[str]:
    fixed = ["status", "lr"] + METRIC_COLUMNS + ["steps", "steps_done", "wall_seconds", "job", "note"]
    return list(sweep.swept_keys) + [c for c in fixed if c not in sweep.swept_keys]


def job_row(job: Job, sweep: Sweep) -> dict[str, Any]:
    row: dict[str, Any] = {k: job.overrides.get(k) for k in sweep.swept_keys}
    row.update(status=job.status, job=job.name, steps=job.steps, steps_done=job.steps_done,
               wall_seconds=job.wall_seconds, note=job.note, **job.values)
    if "lr" not in sweep.swept_keys:
        row["lr"] = job.lr
    return row


def _cell(value: Any) -> str:
    if value is None:
        return ""  # unknown
    if isinstance(value, float):
        return repr(value)  # exact; 'nan' where a job has no such value
    return str(value)


def write_table(sweep: Sweep, path: str | os.PathLike) -> Path:
    """``summary.csv``: a row per job (found or missing), one column per swept key first."""
    path = Path(path)
    columns = table_columns(sweep)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for job in sweep.jobs:
            row = job_row(job, sweep)
            writer.writerow([_cell(row.get(c)) for c in columns])
    os.replace(tmp, path)
    return path


def format_table(sweep: Sweep) -> str:
    """The table for a terminal: swept keys, status and the main numbers."""
    columns = list(sweep.swept_keys) + ["status", "final_loss", "final_test_error", "final_gen_error",
                                        "max_sharpness", "late_sharpness_over_edge", "steps_done"]
    heads = [c.replace("final_", "").replace("late_sharpness_over_edge", "late λ/(2/lr)") for c in columns]
    rows = []
    for job in sweep.jobs:
        row = job_row(job, sweep)
        cells = []
        for c in columns:
            v = row.get(c)
            cells.append("" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v))
        rows.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# The figure


MAX_ROWS = 6  # more groups than this: one row, the other keys go into the labels
ERROR_COLORS = {m: COLORS[m] for m in ("test_error", "gen_error")}
DIVERGED_COLOR = COLORS["diverged"]


def _fmt_value(value: Optional[str]) -> str:
    """A swept value for a label: as typed, or with 4 significant digits when a sweeper chose it."""
    number = _as_number(value)
    return f"{number:.4g}" if number is not None and len(str(value)) > 7 else str(value)


def _sort_key(value: Optional[str]) -> tuple:
    number = _as_number(value)
    return (0, number, "") if number is not None else (1, 0.0, str(value))


def _groups(sweep: Sweep, xkey: Optional[str]) -> tuple[list[str], list[tuple[tuple, list[Job]]]]:
    """Rows of the figure: jobs grouped by the swept keys other than ``xkey``."""
    group_keys = [k for k in sweep.swept_keys if k != xkey]
    groups: dict[tuple, list[Job]] = {}
    for job in sweep.jobs:
        groups.setdefault(tuple(job.overrides.get(k) for k in group_keys), []).append(job)
    if len(groups) > MAX_ROWS:
        return [], [((), list(sweep.jobs))]
    ordered = sorted(groups.items(), key=lambda kv: [_sort_key(v) for v in kv[0]])
    return group_keys, ordered


def _job_label(job: Job, xkey: Optional[str], extra_keys: Sequence[str]) -> str:
    head = ", ".join(f"{k}={_fmt_value(job.overrides.get(k))}" for k in ([xkey] if xkey else []) + list(extra_keys)) or job.name
    ratio = job.values.get("late_sharpness_over_edge", math.nan)
    if job.status == DIVERGED:
        return f"{head}: diverged at step {job.steps_done}"
    if job.status in (FAILED, MISSING, INTERRUPTED):
        more = f", {job.steps_done} steps" if job.steps_done is not None else ""
        return f"{head}: {job.status}{more}"
    return f"{head}: late λ = {ratio:.2f}·(2/lr)" if math.isfinite(ratio) else head


def _line_style(job: Job) -> str:
    """Dotted: a job that stopped before its end (failed, interrupted); solid otherwise."""
    return ":" if job.status in (FAILED, INTERRUPTED) else "-"


def _curve(job: Job, column: str, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    if column not in job.metrics or "step" not in job.metrics:
        return np.array([]), np.array([])
    x, y = job.metrics["step"], job.metrics[column] * scale
    keep = ~np.isnan(y)
    return x[keep], y[keep]


def _limits(values: list[np.ndarray], *, log: bool, floor: Optional[float] = None) -> Optional[tuple[float, float]]:
    v = np.concatenate([np.ravel(a) for a in values]) if values else np.array([])
    v = v[np.isfinite(v)]
    if log:
        v = v[v > 0]
    if not len(v):
        return None
    lo, hi = float(v.min()), float(v.max())
    if log:
        return lo / 1.6, hi * 1.6
    lo = min(lo, 0.0) if floor is None else min(lo, floor)
    pad = 0.08 * (hi - lo or 1.0)
    return lo - (pad if lo < 0 else 0.0), hi + pad


def _draw_curves(ax: Any, jobs: Sequence[Job], column: str, color: Any, lims: Optional[tuple[float, float]], *,
                 lw: float, times_lr: bool = False) -> None:
    """One curve per job (scaled by its lr with ``times_lr``); a diverged job's ends in a mark."""
    for job in jobs:
        x, y = _curve(job, column, job.lr if times_lr else 1.0)
        ax.plot(x, y, color=color(job), lw=lw, ls=_line_style(job))
        if job.status == DIVERGED:
            _mark_end(ax, job, x, y, lims)


def _mark_end(ax: Any, job: Job, x: np.ndarray, y: np.ndarray, lims: Optional[tuple[float, float]]) -> None:
    """An x where a diverged run stopped: at its last value, or at the panel's top edge when that
    value is off the scale or was not measured at the last step."""
    if lims is None or not len(x):
        return
    end = float(job.steps_done) if job.steps_done is not None else float(x[-1])
    value = float(y[-1]) if x[-1] >= end and math.isfinite(y[-1]) else lims[1]
    ax.plot([end], [min(max(value, lims[0]), lims[1])], marker="x", ms=9, mew=2.2, color=DIVERGED_COLOR,
            clip_on=False, zorder=5)


def _draw(sweep: Sweep) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import to_hex
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.transforms import blended_transform_factory

    import matplotlib as mpl

    xkey = "lr" if "lr" in sweep.swept_keys else (sweep.swept_keys[0] if sweep.swept_keys else None)
    group_keys, groups = _groups(sweep, xkey)
    extra_keys = [k for k in sweep.swept_keys if k != xkey and k not in group_keys]

    def xraw(job: Job) -> str:
        return str(job.overrides.get(xkey)) if xkey else str(job.num)

    groups = [(group, sorted(jobs, key=lambda j: _sort_key(xraw(j)))) for group, jobs in groups]

    distinct = sorted({xraw(j) for j in sweep.jobs}, key=_sort_key)
    numeric = all(_as_number(v) is not None for v in distinct)
    cmap = mpl.colormaps["viridis"] if numeric else mpl.colormaps["tab10"]
    rank = {v: i for i, v in enumerate(distinct)}

    def color(job: Job) -> str:
        i = rank[xraw(job)]
        if numeric:  # dark to light green, never the pale yellow end
            return to_hex(cmap(0.88 * i / max(len(distinct) - 1, 1)))
        return to_hex(cmap(i % 10))

    rows = len(groups)
    if rows == 1:  # one group: a 2x2 page
        fig = Figure(figsize=(16.5, 10.2), layout="constrained")
        axes = fig.subplots(2, 2).reshape(1, 4)
    else:  # one row of four panels per group, each row titled by its group
        fig = Figure(figsize=(21, 1.3 + 4.1 * rows), layout="constrained")
        subfigs = fig.subfigures(rows, 1)
        axes = np.array([sub.subplots(1, 4) for sub in subfigs])
        for sub, (group, _) in zip(subfigs, groups):
            sub.suptitle("  ".join(f"{k} = {_fmt_value(v)}" for k, v in zip(group_keys, group)),
                         fontsize=11.5, fontweight="bold", x=0.01, ha="left")
    FigureCanvasAgg(fig)
    x_values = {j.name: (_as_number(xraw(j)) if numeric else float(rank[xraw(j)])) for j in sweep.jobs}
    positive = [v for v in x_values.values() if v is not None and v > 0]
    x_log = numeric and len(positive) == len(x_values) and max(positive) / min(positive) >= 8
    steps_max = max([j.steps_done or 0 for j in sweep.jobs] + [j.steps or 0 for j in sweep.jobs if j.status == FINISHED] + [1])

    # One scale per column, shared by the rows, set by all jobs but the diverged ones (unless
    # nothing else is left): a diverged curve runs off the panel and ends in an x at its edge.
    recorded = [j for j in sweep.jobs if j.metrics]
    scaling = [j for j in recorded if j.status != DIVERGED] or recorded
    edges = [np.array([2 / j.lr]) for j in scaling if j.lr > 0]
    sharp = [_curve(j, "sharpness")[1] for j in scaling]
    allv = np.concatenate(edges + sharp) if edges or sharp else np.array([])
    allv = allv[np.isfinite(allv)]
    s_log = bool(len(allv) > 0 and allv.min() > 0 and allv.max() / allv.min() > 25)
    s_lims = _limits(edges + sharp, log=s_log)
    n_lims = _limits([_curve(j, "sharpness", j.lr)[1] for j in scaling] + [np.array([2.0])], log=False, floor=0.0)
    if n_lims:
        n_lims = (n_lims[0], min(max(n_lims[1], 2.5), 6.0))
    l_lims = _limits([_curve(j, "loss")[1] for j in scaling], log=True)
    e_lims = _limits([np.array([j.values.get(f"final_{m}", math.nan) for j in sweep.jobs if j.status != DIVERGED])
                      for m in ("test_error", "gen_error")], log=True)

    for row, (group, jobs) in enumerate(groups):
        ax_s, ax_n, ax_l, ax_e = axes[row]
        drawn = [j for j in jobs if j.metrics]

        # 1. sharpness and each job's 2/lr
        _draw_curves(ax_s, drawn, "sharpness", color, s_lims, lw=1.4)
        for job in drawn:
            if job.lr > 0:
                ax_s.axhline(2 / job.lr, color=color(job), ls="--", lw=1.1, alpha=0.9)
        if s_log:
            ax_s.set_yscale("log")
            _label_log_axis(ax_s.yaxis)
        if s_lims:
            ax_s.set_ylim(*s_lims)
        ax_s.set_title("sharpness λ_max (dashed: 2/lr, same colour)", fontsize=10)
        ax_s.set_ylabel("top Hessian eigenvalue")

        # 2. lr·sharpness against 2
        _draw_curves(ax_n, drawn, "sharpness", color, n_lims, lw=1.4, times_lr=True)
        edge_line = ax_n.axhline(2.0, color="black", ls="--", lw=1.2)
        edge_legend = ax_n.legend([edge_line], ["edge of stability: lr·λ = 2"], loc="lower right", fontsize=8.5, framealpha=0.85)
        ax_n.add_artist(edge_legend)  # kept when the jobs' legend is attached to this panel
        if n_lims:
            ax_n.set_ylim(*n_lims)
        ax_n.set_title("lr · sharpness (all jobs on one scale)", fontsize=10)
        ax_n.set_ylabel("lr · λ_max")

        # 3. the loss
        _draw_curves(ax_l, drawn, "loss", color, l_lims, lw=1.2)
        ax_l.set_yscale("log")
        _label_log_axis(ax_l.yaxis)
        if l_lims:
            ax_l.set_ylim(*l_lims)
        ax_l.set_title("training loss", fontsize=10)
        ax_l.set_ylabel("loss")
        for ax in (ax_s, ax_n, ax_l):
            ax.set_xlim(0, steps_max)
            ax.set_xlabel("step")
            ax.grid(alpha=0.25)
        if not drawn:
            for ax in (ax_s, ax_n, ax_l):
                ax.text(0.5, 0.5, "no job of this row recorded metrics", ha="center", va="center", transform=ax.transAxes, color="0.4")

        # 4. final errors against the swept value
        errors_legend = _final_errors(ax_e, jobs, x_values, xkey, x_log, numeric, distinct, rank, blended_transform_factory)
        if e_lims:
            ax_e.set_ylim(*e_lims)
        if errors_legend is not None:
            ax_e.add_artist(errors_legend)  # kept when the jobs' legend is attached to this panel
        ax_e.set_title(f"final errors against {xkey or 'job'}", fontsize=10)

        handles = [Line2D([], [], color=color(j), lw=2, ls=_line_style(j) if j.status != MISSING else "none") for j in jobs]
        labels = [_job_label(j, xkey, extra_keys) for j in jobs]
        if any(j.status == DIVERGED for j in jobs):
            handles.append(Line2D([], [], color=DIVERGED_COLOR, marker="x", ls="none", ms=8, mew=2))
            labels.append("where a run diverged\n(off-scale values drawn at the edge)")
        (ax_n if rows == 1 else ax_e).legend(
            handles, labels, loc="upper left", bbox_to_anchor=(1.03, 1.0), fontsize=9, frameon=False,
            title=f"{xkey or 'job'}   (late λ: mean over the last 20% of the steps)", title_fontsize=9, alignment="left")

    counts = ", ".join(f"{n} {s}" for s, n in sweep.counts().items())
    title = f"{sweep.sweep_dir}: {len(sweep.jobs)} jobs ({counts})"
    lines = [title]
    if sweep.fixed:
        lines.append("fixed: " + " ".join(sweep.fixed))
    if sweep.missing:
        lines.append("missing (no job folder): " + ", ".join(j.name for j in sweep.missing))
    fig.suptitle("\n".join(lines), fontsize=11, ha="left", x=0.01)
    return fig


def _final_errors(ax: Any, jobs: list[Job], x_values: dict[str, Optional[float]], xkey: Optional[str], x_log: bool,
                  numeric: bool, distinct: list[str], rank: dict[str, int], blended: Any) -> Any:
    from matplotlib.ticker import NullFormatter, NullLocator

    placed = [j for j in jobs if x_values.get(j.name) is not None]
    placed.sort(key=lambda j: x_values[j.name])
    good = [j for j in placed if j.status != DIVERGED]
    for metric, marker, ls in (("test_error", "o", "-"), ("gen_error", "s", "--")):
        pts = [(x_values[j.name], j.values.get(f"final_{metric}", math.nan), j.status) for j in good]
        pts = [(x, y, st) for x, y, st in pts if math.isfinite(y) and y > 0]
        if pts:
            xs, ys, _ = zip(*pts)
            label = "test error (in the training box)" if metric == "test_error" else "generalization error (outside it)"
            ax.plot(xs, ys, marker=marker, ls=ls, color=ERROR_COLORS[metric], label=label, ms=6, lw=1.3)
            for x, y, st in pts:  # a job that stopped early: its last recorded value, hollow
                if st in (FAILED, INTERRUPTED):
                    ax.plot([x], [y], marker=marker, ms=7, color=ERROR_COLORS[metric], mfc="white", mew=1.5, ls="none")
    ax.set_yscale("log")
    _label_log_axis(ax.yaxis)
    trans = blended(ax.transData, ax.transAxes)
    for job in placed:
        x = x_values[job.name]
        if job.status == DIVERGED:
            ax.plot([x], [0.96], marker="x", ms=10, mew=2.4, color=DIVERGED_COLOR, transform=trans, clip_on=False)
            ax.text(x, 0.9, "diverged", transform=trans, ha="center", va="top", fontsize=8, color=DIVERGED_COLOR)
        elif job.status in (FAILED, MISSING, INTERRUPTED):
            ax.text(x, 0.97, job.status, transform=trans, ha="center", va="top", fontsize=8, color="0.3")
    if x_log:
        ax.set_xscale("log")
    if numeric:
        ticks = sorted({v for v in x_values.values() if v is not None})
        chosen = any(len(v) > 7 for v in distinct)  # values a sweeper chose (Optuna): let matplotlib place ticks
        if len(ticks) <= 8 and not chosen:
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{t:g}" for t in ticks])
            ax.xaxis.set_minor_formatter(NullFormatter())  # the swept values are the major ticks
            if not x_log:
                ax.xaxis.set_minor_locator(NullLocator())
        if len(ticks) == 1:
            ax.set_xlim(ticks[0] * 0.5 if x_log else ticks[0] - 1, ticks[0] * 2 if x_log else ticks[0] + 1)
        else:
            lo, hi = ticks[0], ticks[-1]
            if x_log:
                ax.set_xlim(lo / (hi / lo) ** 0.08, hi * (hi / lo) ** 0.08)
            else:
                pad = 0.08 * (hi - lo)
                ax.set_xlim(lo - pad, hi + pad)
    else:
        ax.set_xticks(range(len(distinct)))
        ax.set_xticklabels(distinct, rotation=30 if max(map(len, distinct)) > 6 else 0)
        ax.set_xlim(-0.5, len(distinct) - 0.5)
    ax.set_xlabel(xkey or "job")
    ax.set_ylabel("final MSE")
    ax.grid(alpha=0.25)
    if ax.get_legend_handles_labels()[0]:
        return ax.legend(loc="best", fontsize=8, framealpha=0.85)
    return None


def _label_log_axis(axis: Any) -> None:
    """Label some minor ticks of a log axis that spans two decades or less (2, 3, 5 ×10^k), so
    values between powers of ten can be read."""
    from matplotlib.ticker import LogFormatterSciNotation

    axis.set_minor_formatter(LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(2, 0.6)))


def plot_sweep(sweep: Sweep, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """``sweep.png``: per group of jobs (one row per value of the keys other than the first
    swept key), sharpness against 2/lr, lr·sharpness against 2, the loss, and the final errors
    against the swept value."""
    path = Path(path)
    fig = _draw(sweep)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=dpi, facecolor="white")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------
# Entry points


def summarize(sweep_dir: str | os.PathLike, *, plot: bool = True) -> SweepResult:
    """Write ``summary.csv`` and (with ``plot``) ``sweep.png`` into the sweep folder."""
    sweep = load_sweep(sweep_dir)
    csv_path = write_table(sweep, sweep.sweep_dir / SUMMARY_CSV)
    png = plot_sweep(sweep, sweep.sweep_dir / SWEEP_PNG) if plot else None
    return SweepResult(sweep=sweep, csv=csv_path, png=png)


def describe(result: SweepResult) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in result.sweep.counts().items())
    files = f"{result.csv}" + (f", {result.png}" if result.png else "")
    lines = [f"sweep summary ({len(result.sweep.jobs)} jobs: {counts}): {files}"]
    for job in result.sweep.jobs:
        if job.status in (MISSING, FAILED):
            lines.append(f"{job.status} job {job.name}: {job.note}")
    return "\n".join(lines)


def objective_value(summary: Mapping[str, Any], metric: str = "gen_error", *, penalty: float = DIVERGED_OBJECTIVE) -> float:
    """What the task function returns for sweepers that optimize (Optuna): the run's final
    ``metric`` (a key of ``summary['final']``); ``penalty``, a finite number worse than any real
    error, when the run diverged or the metric is not finite."""
    value = _to_float(summary.get("final", {}).get(metric))
    if summary.get("status") == DIVERGED or not math.isfinite(value):
        return float(penalty)
    return value


class SweepSummary(Callback):
    """Hydra callback: writes the sweep summary when a multirun ends, and also when it ends
    badly (a failed job, Ctrl-C), from an exit hook. A summary that cannot be written is
    logged; it never changes the sweep's outcome."""

    def __init__(self, plot: bool = True) -> None:
        self.plot = plot
        self._pending: Optional[str] = None

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self._pending = str(config.hydra.sweep.dir)
        atexit.register(self._at_exit)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        self._pending = None
        self._write(str(config.hydra.sweep.dir))

    def _at_exit(self) -> None:
        if self._pending is not None and Path(self._pending).is_dir():
            sweep_dir, self._pending = self._pending, None
            self._write(sweep_dir)

    def _write(self, sweep_dir: str) -> None:
        try:
            result = summarize(sweep_dir, plot=self.plot)
        except Exception as e:
            log.error("sweep summary failed (%s: %s); retry with: neuroscope-summary %s", type(e).__name__, e, sweep_dir)
            return
        text = describe(result)
        log.info("%s", text)
        if not logging.getLogger().handlers:  # at exit, logging may already be shut down
            print(text, file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
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
    except FileNotFoundError as e:
        print(f"neuroscope-summary: error: {e}", file=sys.stderr)
        return 2
    print(format_table(result.sweep))
    print(describe(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

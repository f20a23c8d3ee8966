"""``sweep.png``: per group of jobs, sharpness against each job's 2/lr, lr·sharpness against 2,
the loss, and the final errors against the swept value; drawn from a :class:`Sweep` alone."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogFormatterSciNotation, LogLocator, MaxNLocator, NullFormatter, NullLocator
from matplotlib.transforms import blended_transform_factory

from ..rundir import DIVERGED, FAILED, FINISHED, INTERRUPTED, MISSING
from ..viz.style import COLORS
from . import seeds
from .inside import axes_fraction, place_inside_legends, scatter_keys, scatter_panel, spaced
from .jobs import Job, Sweep, as_number

MAX_ROWS = 6  # more groups than this: one row, the other keys go into the labels
STOPPED_EARLY = (FAILED, INTERRUPTED)
NO_NUMBERS = (FAILED, MISSING, INTERRUPTED)
ERRORS = (("test_error", "o", "-", "test error (in the training box)"),
          ("gen_error", "s", "--", "generalization error (outside it)"))
Limits = Optional[tuple[float, float]]
LIGHTEST = 0.72  # of viridis: the lightest colour a job gets (contrast > 2:1 on white)
MAX_ENTRIES = 20  # legend entries beside a panel (9 pt lines, a 10.2 in page); more: a colour bar of the x key


def _fmt_value(value: Optional[str]) -> str:
    """A swept value for a label: as typed, or with 4 significant digits when a sweeper chose it."""
    number = as_number(value)
    return f"{number:.4g}" if number is not None and len(str(value)) > 7 else str(value)


def _sort_key(value: Optional[str]) -> tuple:
    number = as_number(value)
    return (0, number, "") if number is not None else (1, 0.0, str(value))


@dataclass
class Layout:
    """Where each job goes: ``xkey`` on the errors panel's x axis, one row per group of jobs
    (by ``group_keys``, the other swept keys), and one colour per value of ``xkey``."""

    xkey: Optional[str]
    group_keys: list[str]
    extra_keys: list[str]  # swept keys named in the labels (too many groups for rows)
    groups: list[tuple[tuple, list[Job]]]
    distinct: list[str]  # the x values as typed, in order
    numeric: bool
    x_values: dict[str, Optional[float]]  # job name -> its x position
    x_log: bool
    steps_max: int
    seeded: bool = False  # seed is swept too: each curve is the mean over the seeds, with a band
    grid: bool = True  # the sweeper runs a grid (Hydra's basic sweeper); else values it chose (Optuna)

    def color(self, job: Job) -> str:
        i = self.distinct.index(_raw(job, self.xkey))
        if self.numeric:  # dark blue to green: the light yellow end of viridis vanishes on white
            return to_hex(mpl.colormaps["viridis"](LIGHTEST * i / max(len(self.distinct) - 1, 1)))
        return to_hex(mpl.colormaps["tab10"](i % 10))


def _raw(job: Job, xkey: Optional[str]) -> str:
    """The job's value of the swept key on the x axis, as typed (its number without one)."""
    return str(job.overrides.get(xkey)) if xkey else str(job.num)


def _layout(sweep: Sweep) -> Layout:
    seeded = seeds.seed_swept(sweep)
    keys = seeds.other_keys(sweep) if seeded else list(sweep.swept_keys)
    xkey = "lr" if "lr" in keys else (keys[0] if keys else None)
    group_keys = [k for k in keys if k != xkey]
    grouped: dict[tuple, list[Job]] = {}
    for job in sweep.jobs:
        grouped.setdefault(tuple(job.overrides.get(k) for k in group_keys), []).append(job)
    if len(grouped) > MAX_ROWS or not sweep.grid:  # a sweeper's chosen values: one page, the keys in the labels
        group_keys, grouped = [], {(): list(sweep.jobs)}
    groups = [(group, sorted(jobs, key=lambda j: _sort_key(_raw(j, xkey))))
              for group, jobs in sorted(grouped.items(), key=lambda kv: [_sort_key(v) for v in kv[0]])]
    distinct = sorted({_raw(j, xkey) for j in sweep.jobs}, key=_sort_key)
    numeric = all(as_number(v) is not None for v in distinct)
    x_values = {j.name: as_number(_raw(j, xkey)) if numeric else float(distinct.index(_raw(j, xkey))) for j in sweep.jobs}
    positive = [v for v in x_values.values() if v is not None and v > 0]
    steps = [j.steps_done or 0 for j in sweep.jobs] + [j.steps or 0 for j in sweep.jobs if j.status == FINISHED]
    return Layout(xkey=xkey, group_keys=group_keys, groups=groups, distinct=distinct, numeric=numeric, x_values=x_values,
                  extra_keys=[k for k in keys if k != xkey and k not in group_keys],
                  x_log=numeric and len(positive) == len(x_values) and max(positive) / min(positive) >= 8,
                  steps_max=max(steps + [1]), seeded=seeded, grid=sweep.grid)


# ------------------------------------------------------------------------------ scales


def _curve(job: Job, column: str, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    if column not in job.metrics or "step" not in job.metrics:
        return np.array([]), np.array([])
    x, y = job.metrics["step"], job.metrics[column] * scale
    keep = ~np.isnan(y)
    return x[keep], y[keep]


def _limits(values: list[np.ndarray], *, log: bool, floor: Optional[float] = None) -> Limits:
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


@dataclass
class Scales:
    """One y scale per column of panels, shared by the rows."""

    sharp_log: bool
    sharp: Limits
    normalized: Limits  # lr·sharpness
    loss: Limits
    errors: Limits


def _scales(sweep: Sweep) -> Scales:
    """Set by all jobs but the diverged ones (unless nothing else is left): a diverged curve
    runs off the panel and ends in an x at its edge."""
    recorded = [j for j in sweep.jobs if j.metrics]
    scaling = [j for j in recorded if j.status != DIVERGED] or recorded
    edges = [np.array([j.edge]) for j in scaling if j.edge > 0]
    sharp = [_curve(j, "sharpness")[1] for j in scaling]
    both = np.concatenate(edges + sharp) if edges or sharp else np.array([])
    both = both[np.isfinite(both)]
    sharp_log = bool(len(both) > 0 and both.min() > 0 and both.max() / both.min() > 25)
    normalized = _limits([_curve(j, "sharpness", j.lr)[1] for j in scaling] + [np.array([2.0])], log=False, floor=0.0)
    if normalized:
        normalized = (normalized[0], min(max(normalized[1], 2.5), 6.0))
    finals = [np.array([j.values.get(f"final_{m}", math.nan) for j in sweep.jobs if j.status != DIVERGED]) for m, *_ in ERRORS]
    return Scales(sharp_log=sharp_log, sharp=_limits(edges + sharp, log=sharp_log), normalized=normalized,
                  loss=_limits([_curve(j, "loss")[1] for j in scaling], log=True), errors=_limits(finals, log=True))


def _label_log_axis(axis: Any) -> None:
    """Label some minor ticks of a log axis that spans two decades or less (2, 3, 5 ×10^k), so
    values between powers of ten can be read."""
    axis.set_minor_formatter(LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(2, 0.6)))


def _set_y(ax: Any, lims: Limits, *, log: bool) -> None:
    if log:
        ax.set_yscale("log")
        _label_log_axis(ax.yaxis)
    if lims:
        ax.set_ylim(*lims)


# --------------------------------------------------------------------------- step panels


def _line_style(job: Job) -> str:
    """Dotted: a job that stopped before its end (failed, interrupted); solid otherwise."""
    return ":" if job.status in STOPPED_EARLY else "-"


def _mark_end(ax: Any, job: Job, x: np.ndarray, y: np.ndarray, lims: Limits) -> None:
    """An x where a diverged run stopped: at its last value, or at the panel's top edge when that
    value is off the scale or was not measured at the last step."""
    if lims is None or not len(x):
        return
    end = float(job.steps_done) if job.steps_done is not None else float(x[-1])
    value = float(y[-1]) if x[-1] >= end and math.isfinite(y[-1]) else lims[1]
    ax.plot([end], [min(max(value, lims[0]), lims[1])], marker="x", ms=9, mew=2.2, color=COLORS["diverged"],
            clip_on=False, zorder=5)


def _draw_curves(ax: Any, jobs: Sequence[Job], column: str, layout: Layout, lims: Limits, *,
                 lw: float, times_lr: bool = False) -> None:
    """One curve per job, labelled by its name (scaled by its lr with ``times_lr``); a
    diverged job's ends in a mark. With seeds swept: one curve per value of the x key, the
    mean over its seeds, over the band from their min to their max."""
    if layout.seeded:
        for _, same in seeds.seed_groups(jobs, [layout.xkey] if layout.xkey else []):
            b = seeds.band([_curve(j, column, j.lr if times_lr else 1.0) for j in same])
            if b is None:
                continue
            color, ls = layout.color(same[0]), ":" if any(j.status in STOPPED_EARLY for j in same) else "-"
            ax.fill_between(b.x, b.lo, b.hi, color=color, alpha=0.2, lw=0)
            ax.plot(b.x, b.mean, color=color, lw=lw, ls=ls, label=f"mean of {len(same)} seeds")
    for job in jobs:
        x, y = _curve(job, column, job.lr if times_lr else 1.0)
        if not layout.seeded:
            ax.plot(x, y, color=layout.color(job), lw=lw, ls=_line_style(job), label=job.name)
        if job.status == DIVERGED:
            _mark_end(ax, job, x, y, lims)


def _sharpness_panel(ax: Any, jobs: Sequence[Job], layout: Layout, scales: Scales) -> None:
    _draw_curves(ax, jobs, "sharpness", layout, scales.sharp, lw=1.4)
    for job in jobs:
        if job.edge > 0:
            ax.axhline(job.edge, color=layout.color(job), ls="--", lw=1.1, alpha=0.9)
    _set_y(ax, scales.sharp, log=scales.sharp_log)
    ax.set_title(f"sharpness λ_max (dashed: {_edge_name(jobs)}, same colour)", fontsize=10)
    ax.set_ylabel("top Hessian eigenvalue")


def _edge_name(jobs: Sequence[Job]) -> str:
    """What the dashed lines are: 2/lr, unless a job's update rule moves its edge."""
    moved = any(j.lr > 0 and j.edge > 0 and not math.isclose(j.edge, 2 / j.lr) for j in jobs)
    return "each job's edge of stability" if moved else "2/lr"


def _normalized_panel(ax: Any, jobs: Sequence[Job], layout: Layout, scales: Scales) -> None:
    _draw_curves(ax, jobs, "sharpness", layout, scales.normalized, lw=1.4, times_lr=True)
    edge_line = ax.axhline(2.0, color=COLORS["eos"], ls="--", lw=1.2)
    edge_legend = ax.legend([edge_line], ["edge of stability: lr·λ = 2"], loc="lower right", fontsize=8.5, framealpha=0.85)
    ax.add_artist(edge_legend)  # kept when the jobs' legend is attached to this panel
    _set_y(ax, scales.normalized, log=False)
    ax.set_title("lr · sharpness (all jobs on one scale)", fontsize=10)
    ax.set_ylabel("lr · λ_max")


def _loss_panel(ax: Any, jobs: Sequence[Job], layout: Layout, scales: Scales) -> None:
    _draw_curves(ax, jobs, "loss", layout, scales.loss, lw=1.2)
    _set_y(ax, scales.loss, log=True)
    ax.set_title("training loss", fontsize=10)
    ax.set_ylabel("loss")


def _step_axes(axes: Sequence[Any], drawn: Sequence[Job], steps_max: int) -> None:
    for ax in axes:
        ax.set_xlim(0, steps_max)
        ax.set_xlabel("step")
        ax.grid(alpha=0.25)
        if not drawn:  # in the text colour, faded: a remark, not data
            ax.text(0.5, 0.5, "no job of this row recorded metrics", ha="center", va="center", transform=ax.transAxes, alpha=0.6)


# -------------------------------------------------------------------------- errors panel


def _final_points(ax: Any, jobs: Sequence[Job], layout: Layout) -> None:
    """Each error against the swept value; a job that stopped early: its last recorded value, hollow."""
    good = sorted((j for j in jobs if layout.x_values.get(j.name) is not None and j.status != DIVERGED),
                  key=lambda j: layout.x_values[j.name])
    for metric, marker, ls, label in ERRORS:
        pts = [(layout.x_values[j.name], j.values.get(f"final_{metric}", math.nan), j.status) for j in good]
        pts = [(x, y, st) for x, y, st in pts if math.isfinite(y) and y > 0]
        if not pts:
            continue
        if layout.seeded:
            _seed_means(ax, pts, metric, marker, ls, label)
            continue
        xs, ys, _ = zip(*pts)
        ax.plot(xs, ys, marker=marker, ls=ls if layout.grid else "none", color=COLORS[metric], label=label, ms=6, lw=1.3)
        for x, y, st in pts:
            if st in STOPPED_EARLY:  # filled with the panel's background, over the line's marker
                ax.plot([x], [y], marker=marker, ms=7, color=COLORS[metric], mfc=ax.get_facecolor(), mew=1.5, ls="none")


def _seed_means(ax: Any, pts: Sequence[tuple[float, float, str]], metric: str, marker: str, ls: str, label: str) -> None:
    """Per x value, the mean over the seeds, with a bar from their min to their max."""
    xs = sorted({x for x, _, _ in pts})
    ys = [[y for x, y, _ in pts if x == v] for v in xs]
    means = np.array([np.mean(v) for v in ys])
    err = np.array([[m - min(v) for m, v in zip(means, ys)], [max(v) - m for m, v in zip(means, ys)]])
    ax.errorbar(xs, means, yerr=err, marker=marker, ls=ls, color=COLORS[metric], ms=6, lw=1.3, capsize=3,
                label=f"{label}: mean, min-max over seeds")


def _status_marks(ax: Any, jobs: Sequence[Job], layout: Layout) -> None:
    """At the top of the panel, above each job without final errors, a mark, and why, where the
    words of a neighbour leave room (close values share one label). Call after the x axis is set."""
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    marked = sorted(((layout.x_values[j.name], j.status) for j in jobs
                     if layout.x_values.get(j.name) is not None and (j.status == DIVERGED or j.status in NO_NUMBERS)))
    for status in dict.fromkeys(st for _, st in marked):
        xs = sorted({x for x, st in marked if st == status})
        diverged = status == DIVERGED
        if diverged:
            ax.plot(xs, [0.96] * len(xs), ls="none", marker="x", ms=10, mew=2.4, color=COLORS["diverged"], transform=trans,
                    clip_on=False)
        for i in spaced([axes_fraction(ax, x) for x in xs], 0.18):
            ax.text(xs[i], 0.9 if diverged else 0.97, status, transform=trans, ha="center", va="top", fontsize=8,
                    color=COLORS["diverged"] if diverged else "black", alpha=1.0 if diverged else 0.7)


def _swept_axis(ax: Any, layout: Layout) -> None:
    """The x axis of the errors panel: the swept values as ticks where they are typed (those too
    close to a neighbour's label left unlabelled); round ticks for values a sweeper chose."""
    if layout.x_log:
        ax.set_xscale("log")
    if not layout.numeric:
        ax.set_xticks(range(len(layout.distinct)))
        ax.set_xticklabels(layout.distinct, rotation=30 if max(map(len, layout.distinct)) > 6 else 0)
        ax.set_xlim(-0.5, len(layout.distinct) - 0.5)
        return
    ticks = sorted({v for v in layout.x_values.values() if v is not None})
    lo, hi = ticks[0], ticks[-1]
    if lo == hi:
        ax.set_xlim(lo * 0.5 if layout.x_log else lo - 1, lo * 2 if layout.x_log else lo + 1)
    elif layout.x_log:
        ax.set_xlim(lo / (hi / lo) ** 0.08, hi * (hi / lo) ** 0.08)
    else:
        ax.set_xlim(lo - 0.08 * (hi - lo), hi + 0.08 * (hi - lo))
    chosen = not layout.grid or any(len(v) > 7 for v in layout.distinct)  # values a sweeper chose (Optuna)
    if len(ticks) <= 12 and not chosen:
        kept = [ticks[i] for i in spaced([axes_fraction(ax, t) for t in ticks], 0.12)]
        ax.set_xticks(kept)
        ax.set_xticklabels([f"{t:g}" for t in kept])
    elif layout.x_log:
        decades = math.log10(ax.get_xlim()[1] / ax.get_xlim()[0])
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor ticks unlabelled: their labels collide
    if not layout.x_log:
        ax.xaxis.set_minor_locator(NullLocator())


def _errors_panel(ax: Any, jobs: Sequence[Job], layout: Layout, scales: Scales) -> None:
    _final_points(ax, jobs, layout)
    _set_y(ax, scales.errors, log=True)
    _swept_axis(ax, layout)
    _status_marks(ax, jobs, layout)
    ax.set_xlabel(layout.xkey or "job")
    ax.set_ylabel("final MSE")
    ax.grid(alpha=0.25)
    if ax.get_legend_handles_labels()[0]:
        ax.add_artist(ax.legend(loc="best", fontsize=8, framealpha=0.85))  # kept when the jobs' legend is attached here
    ax.set_title(f"final errors against {layout.xkey or 'job'}", fontsize=10)


# --------------------------------------------------------------------------------- figure


def _job_label(job: Job, layout: Layout) -> str:
    keys = ([layout.xkey] if layout.xkey else []) + list(layout.extra_keys)
    head = ", ".join(f"{k}={_fmt_value(job.overrides.get(k))}" for k in keys) or job.name
    ratio = job.values.get("late_sharpness_over_edge", math.nan)
    if job.status == DIVERGED:
        return f"{head}: diverged at step {job.steps_done}"
    if job.status in NO_NUMBERS:
        more = f", {job.steps_done} steps" if job.steps_done is not None else ""
        return f"{head}: {job.status}{more}"
    edge = "(2/lr)" if _edge_name([job]) == "2/lr" else f"{job.edge:.4g}"  # the job's own edge, when it moved
    return f"{head}: late λ = {ratio:.2f}·{edge}" if math.isfinite(ratio) else head


def _seeds_label(same: Sequence[Job], layout: Layout) -> str:
    head = f"{layout.xkey}={_fmt_value(same[0].overrides.get(layout.xkey))}" if layout.xkey else same[0].name
    mean, std, n = seeds.stats([j.values.get("late_sharpness_over_edge", math.nan) for j in same if j.status != DIVERGED])
    text = f"{head}: {len(same)} seeds"
    if n:
        text += f", late λ = {mean:.2f}±{std:.2f}·(2/lr)"
    diverged = sum(j.status == DIVERGED for j in same)
    return text + (f", {diverged} diverged" if diverged else "")


def _jobs_legend(ax: Any, jobs: Sequence[Job], layout: Layout) -> None:
    """An entry per job (per x value over its seeds) beside ``ax``; more than MAX_ENTRIES do not
    fit there: a numeric x key gets a colour bar instead (each job's numbers are in
    summary.csv), another key its first entries and a count of the rest."""
    if layout.seeded:  # an entry per value of the x key, over its seeds
        groups = [same for _, same in seeds.seed_groups(jobs, [layout.xkey] if layout.xkey else [])]
        handles = [Line2D([], [], color=layout.color(same[0]), lw=2) for same in groups]
        labels = [_seeds_label(same, layout) for same in groups]
    else:
        handles = [Line2D([], [], color=layout.color(j), lw=2, ls=_line_style(j) if j.status != MISSING else "none")
                   for j in jobs]
        labels = [_job_label(j, layout) for j in jobs]
    title = f"{layout.xkey or 'job'}   (late λ: mean over the last 20% of the steps)"
    if len(handles) > MAX_ENTRIES:
        if layout.numeric:
            _colour_bar(ax, layout)
            handles, labels, title = _status_entries(jobs), [], "each job's late λ and errors: summary.csv"
            labels = [h.get_label() for h in handles]
        else:
            more = len(handles) - (MAX_ENTRIES - 1)
            handles, labels = handles[: MAX_ENTRIES - 1], labels[: MAX_ENTRIES - 1]
            handles.append(Line2D([], [], ls="none"))
            labels.append(f"... and {more} more (summary.csv)")
    if any(j.status == DIVERGED for j in jobs):
        handles.append(Line2D([], [], color=COLORS["diverged"], marker="x", ls="none", ms=8, mew=2))
        labels.append("where a run diverged\n(off-scale values drawn at the edge)")
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.03 if len(handles) <= MAX_ENTRIES + 1 else 1.0, 1.0),
              fontsize=9, frameon=False, title=title, title_fontsize=9, alignment="left")


def _colour_bar(ax: Any, layout: Layout) -> None:
    """The x key's values as a colour bar below ``ax``: one band per value, in the jobs' colours;
    at most 9 labelled, evenly spaced, first and last included."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import BoundaryNorm, ListedColormap

    n = len(layout.distinct)
    colours = [to_hex(mpl.colormaps["viridis"](LIGHTEST * i / max(n - 1, 1))) for i in range(n)]
    mappable = ScalarMappable(BoundaryNorm(np.arange(n + 1) - 0.5, n), ListedColormap(colours))
    bar = ax.figure.colorbar(mappable, ax=ax, location="bottom", fraction=0.05, pad=0.12, aspect=40)
    ticks = sorted(set(np.linspace(0, n - 1, min(n, 9)).round().astype(int).tolist()))
    bar.set_ticks(ticks, labels=[_fmt_value(layout.distinct[i]) for i in ticks])
    bar.ax.tick_params(labelsize=8)
    bar.set_label(f"{layout.xkey}: the colour of each job's curves ({n} values)", fontsize=9)


def _status_entries(jobs: Sequence[Job]) -> list[Line2D]:
    """With a colour bar in place of the jobs' entries: what each line style means, and how many jobs ended how."""
    counts: dict[str, int] = {}
    for j in jobs:
        counts[j.status] = counts.get(j.status, 0) + 1
    entries = [Line2D([], [], color="0.4", lw=2, label=f"finished: {counts.get(FINISHED, 0)} jobs")]
    stopped = sum(counts.get(s, 0) for s in STOPPED_EARLY)
    if stopped:
        entries.append(Line2D([], [], color="0.4", lw=2, ls=":", label=f"stopped early (failed, interrupted): {stopped}"))
    if counts.get(DIVERGED):
        entries.append(Line2D([], [], color="0.4", lw=2, label=f"diverged: {counts[DIVERGED]}"))
    if counts.get(MISSING):
        entries.append(Line2D([], [], ls="none", label=f"missing: {counts[MISSING]}"))
    return entries


def _new_figure(layout: Layout) -> tuple[Figure, np.ndarray, list[Any]]:
    """A 2x2 page for one group (a third column for the scatter panels of a sweep without a
    grid over several keys); else one row of four panels per group, titled by its group."""
    rows = len(layout.groups)
    extra: list[Any] = []
    if rows == 1 and scatter_keys(layout):
        fig = Figure(figsize=(22, 10.2), layout="constrained")
        grid = fig.subplots(2, 3)
        axes = np.array([[grid[0, 0], grid[0, 1], grid[1, 0], grid[1, 1]]])
        extra = [grid[0, 2], grid[1, 2]]
    elif rows == 1:
        fig = Figure(figsize=(16.5, 10.2), layout="constrained")
        axes = fig.subplots(2, 2).reshape(1, 4)
    else:
        fig = Figure(figsize=(21, 1.3 + 4.1 * rows), layout="constrained")
        subfigs = fig.subfigures(rows, 1)
        axes = np.array([sub.subplots(1, 4) for sub in subfigs])
        for sub, (group, _) in zip(subfigs, layout.groups):
            sub.suptitle("  ".join(f"{k} = {_fmt_value(v)}" for k, v in zip(layout.group_keys, group)),
                         fontsize=11.5, fontweight="bold", x=0.01, ha="left")
    FigureCanvasAgg(fig)
    return fig, axes, extra


def draw_sweep(sweep: Sweep) -> Figure:
    """The figure of ``sweep.png``; each row's axes: sharpness, lr·sharpness, loss, final errors."""
    layout, scales = _layout(sweep), _scales(sweep)
    fig, axes, extra = _new_figure(layout)
    for (_, jobs), (ax_s, ax_n, ax_l, ax_e) in zip(layout.groups, axes):
        drawn = [j for j in jobs if j.metrics]
        _sharpness_panel(ax_s, drawn, layout, scales)
        _normalized_panel(ax_n, drawn, layout, scales)
        _loss_panel(ax_l, drawn, layout, scales)
        _step_axes((ax_s, ax_n, ax_l), drawn, layout.steps_max)
        _errors_panel(ax_e, jobs, layout, scales)
        _jobs_legend(ax_n if len(layout.groups) == 1 else ax_e, jobs, layout)
    for ax, key in zip(extra, scatter_keys(layout)):
        scatter_panel(ax, sweep.jobs, key, scales.errors)
    lines = [f"{sweep.sweep_dir}: {len(sweep.jobs)} jobs ({sweep.counts_text()})"]
    if sweep.fixed:
        lines.append("fixed: " + " ".join(sweep.fixed))
    if sweep.missing:
        lines.append("missing (no job folder): " + ", ".join(j.name for j in sweep.missing))
    fig.suptitle("\n".join(lines), fontsize=11, ha="left", x=0.01)
    place_inside_legends(fig)
    return fig


def plot_sweep(sweep: Sweep, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Write :func:`draw_sweep`'s figure to ``path`` (whole or not at all)."""
    path = Path(path)
    tmp = path.with_suffix(".tmp.png")
    draw_sweep(sweep).savefig(tmp, dpi=dpi)
    os.replace(tmp, path)
    return path

"""The sweep figure's finishing: the legends inside panels moved, once the page is laid out, to
where they cover no curve and no label; the scatter panels of final errors against each
further key of a sweep without a grid (Optuna); and the spacing rule for labels along an axis."""
from __future__ import annotations

import math
from typing import Any, Sequence

from matplotlib.legend import Legend

from ..rundir import DIVERGED
from ..viz import placement
from ..viz.style import COLORS
from .jobs import Job, as_number


def spaced(positions: Sequence[float], min_gap: float) -> list[int]:
    """Indices of the positions (axes fractions, sorted) kept so that no two are closer than ``min_gap``."""
    kept: list[int] = []
    for i, p in enumerate(positions):
        if not kept or p - positions[kept[-1]] >= min_gap:
            kept.append(i)
    return kept


def axes_fraction(ax: Any, x: float) -> float:
    """Where ``x`` lies along the axes' x axis, 0 (left) to 1 (right)."""
    lo, hi = ax.get_xlim()
    if ax.get_xscale() == "log":
        return (math.log10(x) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    return (x - lo) / (hi - lo)


def _inside(ax: Any) -> list[Legend]:
    """The legends of ``ax`` that sit inside it (not those anchored beside it)."""
    out = []
    for leg in [a for a in ax.get_children() if isinstance(a, Legend)]:
        anchor = leg.get_bbox_to_anchor()
        if anchor is None or anchor.bounds == ax.bbox.bounds:
            out.append(leg)
    return out


def place_inside_legends(fig: Any, tries: int = 3) -> None:
    """Lay the page out once, freeze it, and move each legend inside a panel to the spot that
    covers no text and the fewest curve points; where none is free, raise the panel's top and
    try again."""
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        legends = _inside(ax)
        for attempt in range(tries if legends else 0):
            points = placement.data_points([ln for ln in ax.lines if len(ln.get_xydata()) > 2 or ln.get_marker() != "None"])
            avoid = [t.get_window_extent(renderer) for t in ax.texts if t.get_text()]
            worst = 0.0
            for leg in legends:
                cost, box = placement.place_legend(leg, renderer, points, avoid)
                avoid.append(box)
                worst = max(worst, cost)
            if worst == 0 or attempt == tries - 1:
                break
            lo, hi = ax.get_ylim()
            ax.set_ylim(lo, hi * (hi / lo) ** 0.3 if ax.get_yscale() == "log" else hi + 0.25 * (hi - lo))


def scatter_keys(layout: Any) -> list[str]:
    """The further swept keys a sweep without a grid gets a scatter panel for (two at most)."""
    return list(layout.extra_keys)[:2] if not layout.grid else []


def scatter_panel(ax: Any, jobs: Sequence[Job], key: str, limits: Any) -> None:
    """Final gen_error of each job against its value of ``key`` (diverged jobs: an x at the top)."""
    values = [job.overrides.get(key) for job in jobs]
    numeric = all(as_number(v) is not None for v in values if v is not None)
    names = sorted({str(v) for v in values if v is not None})
    xs = [as_number(v) if numeric else names.index(str(v)) if v is not None else None for v in values]
    good = [(x, j.values.get("final_gen_error", math.nan)) for x, j in zip(xs, jobs) if x is not None and j.status != DIVERGED]
    good = [(x, y) for x, y in good if math.isfinite(y) and y > 0]
    if good:
        ax.plot(*zip(*good), ls="none", marker="s", ms=6, color=COLORS["gen_error"], label="final generalization error")
    bad = [x for x, j in zip(xs, jobs) if x is not None and j.status == DIVERGED]
    if bad:
        ax.plot(bad, [0.96] * len(bad), ls="none", marker="x", ms=10, mew=2.4, color=COLORS["diverged"],
                transform=ax.get_xaxis_transform(), clip_on=False)
    positive = [x for x in xs if x is not None and x > 0]
    if numeric and positive and len(positive) == len([x for x in xs if x is not None]) and max(positive) / min(positive) >= 8:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names)
    ax.set_yscale("log")
    if limits:
        ax.set_ylim(*limits)
    ax.set_xlabel(key)
    ax.set_ylabel("final MSE")
    ax.grid(alpha=0.25)
    ax.set_title(f"final generalization error against {key} (diverged: x)", fontsize=10)

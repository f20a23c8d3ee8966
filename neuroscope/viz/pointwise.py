"""What the fit panels add for a PDE run (and for any prediction that leaves the scale): the
axis names of the problem, the collocation and boundary points, the pointwise error
|u − u*| of the frame's prediction (a log axis on the right in 1D, an inset map in 2D), and
the note that names the true extremes of a prediction drawn clipped."""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
from matplotlib.colors import LogNorm

from ..rundir import Geometry
from . import scales
from .style import COLORS

ERROR_COLOR = "#d62728"


def is_pde(g: Geometry) -> bool:
    """A run with residual points (a PDE run): its fit is u against the exact solution u*."""
    return len(g.collocation_x) > 0


def axis_names(g: Geometry) -> tuple[str, ...]:
    """The input axes' names: the problem's own (e.g. x and t), else x or x₁, x₂, ..."""
    d = int(g.input_dim)
    if len(g.axis_names) == d:
        return tuple(g.axis_names)
    return ("x",) if d == 1 else tuple(f"x{'₀₁₂₃₄₅₆₇₈₉'[i + 1]}" for i in range(d))


def value_label(g: Geometry) -> str:
    """The value axis: u(x, t) for a PDE's solution, f(x) for a target function."""
    names = axis_names(g)
    return f"{'u' if is_pde(g) else 'f'}({', '.join(names[:2]) if len(names) <= 2 else 'x'})"


def off_scale_note(prediction: Optional[np.ndarray], clip: scales.Limits) -> str:
    """'↑ prediction off scale (max 9.1e+06)' (and ↓ for the minimum) where finite values of
    ``prediction`` lie beyond ``clip``, the range they are drawn clipped to; '' otherwise."""
    if prediction is None:
        return ""
    p = np.asarray(prediction, dtype=np.float64)
    p = p[np.isfinite(p)]
    lines = []
    if len(p) and p.max() > clip[1]:
        lines.append(f"↑ prediction off scale (max {p.max():.3g})")
    if len(p) and p.min() < clip[0]:
        lines.append(f"↓ prediction off scale (min {p.min():.3g})")
    return "\n".join(lines)


def pointwise_error(prediction: Optional[np.ndarray], target: np.ndarray) -> np.ndarray:
    """|u − u*| on the plot grid (NaN where either is not finite)."""
    if prediction is None:
        return np.full(len(target), np.nan)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(np.asarray(prediction, dtype=np.float64) - np.asarray(target, dtype=np.float64))
    return np.where(np.isfinite(err), err, np.nan)


def error_limits(predictions: np.ndarray, target: np.ndarray) -> scales.Limits:
    """Whole decades around the positive errors of every shown prediction."""
    errs = [pointwise_error(p, target) for p in predictions] if len(predictions) else []
    return scales.log_limits(errs)


def point_sets(g: Geometry) -> list[tuple[np.ndarray, dict]]:
    """The PDE's point sets that exist, each with its style and legend label."""
    out = []
    if len(g.collocation_x):
        out.append((np.asarray(g.collocation_x, dtype=np.float64),
                    dict(marker="|", color=COLORS["train_points"], alpha=0.45, label="collocation points")))
    if len(g.boundary_x):
        out.append((np.asarray(g.boundary_x, dtype=np.float64),
                    dict(marker="D", color=COLORS["train_box"], alpha=0.9, label="boundary points")))
    return out


class ErrorAxis1D:
    """|u − u*| of the frame's prediction on a log axis at the right of a 1D fit, kept in the
    lower part of it so the legend strip above the curves stays clear."""

    def __init__(self, ax: Any, x: np.ndarray, order: np.ndarray, target: np.ndarray, font_size: float):
        self.twin = ax.twinx()
        self.twin.set_yscale("log")
        self.twin.set_ylabel("|u − u*| (log)", color=ERROR_COLOR, fontsize=font_size * 0.9)
        self.twin.tick_params(axis="y", colors=ERROR_COLOR, labelsize=font_size * 0.8)
        self.x, self.order, self.target = x, order, np.asarray(target, dtype=np.float64)
        (self.line,) = self.twin.plot([], [], color=ERROR_COLOR, lw=1.0, alpha=0.75, label="|u − u*| (right axis)",
                                      animated=True, zorder=3)
        self.limits: Optional[scales.Limits] = None

    def set_limits(self, predictions: np.ndarray) -> scales.Limits:
        lo, hi = error_limits(predictions, self.target)
        decades = math.log10(hi / lo)
        limits = (lo, hi * 10 ** (0.6 * decades))  # the curve keeps to the lower ~60%
        if limits != self.limits:
            self.limits = limits
            self.twin.set_ylim(*limits)
        return limits

    def show(self, prediction: Optional[np.ndarray]) -> None:
        err = pointwise_error(prediction, self.target)[self.order]
        self.line.set_data(self.x, np.where(err > 0, err, np.nan))

    def draw(self) -> None:
        self.twin.draw_artist(self.line)


class ErrorInset2D:
    """|u − u*| of the frame's prediction as a small log-coloured map, with its colour bar, in
    the free column right of a 3D fit (placed by ``place``, once the 3D box is measured)."""

    def __init__(self, fig: Any, g: Geometry, font_size: float):
        n = int(g.plot_shape[0])
        grid = np.asarray(g.plot_x, dtype=np.float64).reshape(n, n, 2)
        self.n, self.target = n, np.asarray(g.plot_target, dtype=np.float64)
        self.ax = fig.add_axes([0, 0, 0.1, 0.1])
        self.cax = fig.add_axes([0, 0, 0.1, 0.01])
        extent = (grid[..., 0].min(), grid[..., 0].max(), grid[..., 1].min(), grid[..., 1].max())
        self.norm = LogNorm(1e-3, 1.0)
        self.image = self.ax.imshow(np.full((n, n), np.nan), origin="lower", extent=extent, aspect="auto", norm=self.norm,
                                    cmap="magma", animated=True, interpolation="nearest")
        names = axis_names(g)
        self.ax.set_title("|u − u*|", fontsize=font_size * 0.8, pad=3)
        self.ax.set_xticks([])
        self.ax.set_yticks([])
        self.ax.set_xlabel(f"{names[0]} →", fontsize=font_size * 0.7, labelpad=1)
        self.ax.set_ylabel(f"{names[1]} →", fontsize=font_size * 0.7, labelpad=1)
        self.colorbar = fig.colorbar(self.image, cax=self.cax, orientation="horizontal")
        self.cax.tick_params(labelsize=font_size * 0.7, length=2, pad=1)

    def set_limits(self, predictions: np.ndarray) -> scales.Limits:
        lo, hi = error_limits(predictions, self.target)
        if (lo, hi) != (self.norm.vmin, self.norm.vmax):
            self.norm.vmin, self.norm.vmax = lo, hi
            self.image.set_norm(self.norm)
            self.colorbar.set_ticks([lo, hi])
        return lo, hi

    def place(self, left: float, top: float, width: float, fig_aspect: float) -> None:
        """Put the map's upper left corner at (left, top) in figure fractions, ``width`` wide
        (``fig_aspect``: the figure's width over its height, for a square map)."""
        height = width * fig_aspect
        self.ax.set_position([left, top - height, width, height])
        self.cax.set_position([left, top - height - 0.16 * height, width, 0.07 * height])

    def show(self, prediction: Optional[np.ndarray]) -> None:
        err = pointwise_error(prediction, self.target).reshape(self.n, self.n).T  # rows: the second input
        self.image.set_data(np.where(err > 0, err, np.nan))

    def draw(self) -> None:
        self.ax.draw_artist(self.image)


def floor_points(ax: Any, g: Geometry, z0: float, scale: float) -> list[Any]:
    """The PDE's point sets on the floor of a 3D fit."""
    out = []
    for pts, style in point_sets(g):
        xy = pts.reshape(-1, 2)
        out.append(ax.scatter(xy[:, 0], xy[:, 1], np.full(len(xy), z0), s=(5 if style["marker"] == "|" else 7) * max(scale, 0.5),
                              c=style["color"], marker="." if style["marker"] == "|" else "D", alpha=style["alpha"],
                              depthshade=False))
    return out


def rug(ax: Any, g: Geometry, scale: float) -> list[Any]:
    """The PDE's point sets of a 1D fit as a rug along the bottom of the panel."""
    from matplotlib.transforms import blended_transform_factory

    to_axes = blended_transform_factory(ax.transData, ax.transAxes)
    out = []
    for pts, style in point_sets(g):
        x = pts.reshape(len(pts), -1)[:, 0]
        y = 0.025 if style["marker"] == "|" else 0.06
        out += ax.plot(x, np.full(len(x), y), ls="none", transform=to_axes, ms=(6 if style["marker"] == "|" else 4) * max(scale, 0.6),
                       zorder=3, clip_on=False, **style)
    return out


def legend_handles(g: Geometry) -> list[Any]:
    """Legend handles for the PDE's point sets that exist."""
    from matplotlib.lines import Line2D

    return [Line2D([], [], ls="none", marker="." if s["marker"] == "|" and g.input_dim == 2 else s["marker"],
                   color=s["color"], ms=5, label=s["label"]) for _, s in point_sets(g)]


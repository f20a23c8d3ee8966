"""The dashboard's panels: the contract every panel keeps (it creates its axes and owns its
artists, limits, legend and notes, and draws the moving part of a frame), and the fit panels,
one class per input geometry (FIT_PANELS). The curve panels are in ``curves``."""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Hashable, Optional, Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..rundir import DIVERGED, Geometry, History
from . import pointwise, scales
from .style import COLORS

MAX_SURFACE_CELLS = 40  # per side of the 3D surface


@dataclass(frozen=True)
class Look:
    """Sizes every panel shares, from the figure's size."""

    scale: float  # the figure's size relative to the 12 x 9 in default
    font_size: float
    live: bool  # the live view: curves are still growing


@dataclass(frozen=True)
class RunView:
    """What a panel is handed of the run (again whenever a live run grows)."""

    history: History
    meta: dict
    steps: np.ndarray  # the step column
    time_x: scales.Limits  # the step axis every curve panel shares
    predictions: np.ndarray  # the stored predictions the frames show, (frames, plot points)


@dataclass(frozen=True)
class Frame:
    """One frame: how far the curves have grown and the prediction on show."""

    cut: float  # curves show their points at steps <= cut
    now: float  # where the 'now' line stands
    prediction: Optional[np.ndarray]  # None when the run stored no prediction frames


def diverged_at(meta: dict) -> tuple[bool, Optional[float]]:
    """Whether the run diverged, and at which step when known."""
    raw = meta.get("diverged_at_step")
    at = float(raw) if isinstance(raw, (int, float)) else None
    return meta.get("status") == DIVERGED or raw is not None, at


def _fmt_box(box: Sequence[float]) -> str:
    return f"[{box[0]:.3g}, {box[1]:.3g}]"


class Panel(ABC):
    """One rectangle of the dashboard. Static artists go into the cached background; those
    in ``animated`` are redrawn every frame by ``draw``."""

    name: ClassVar[str]  # the key of the panel in Dashboard.panels and Dashboard.ax
    projection: ClassVar[Optional[str]] = None
    # whether a dashboard may show another run of the same geometry and columns in this panel
    # (Dashboard.show_run): it keeps no layout state of its own that a full redraw does not redo
    reusable: ClassVar[bool] = True

    def __init__(self, fig: Figure, rect: Sequence[float], history: History, meta: dict, look: Look):
        self.fig, self.rect, self.look = fig, list(rect), look
        self.ax = fig.add_axes(self.rect, projection=self.projection)
        self.animated: list[Any] = []

    @abstractmethod
    def set_history(self, view: RunView) -> Hashable:
        """Take the run's data and apply the limits that changed; returns what the static
        artists depend on (when it changes, the dashboard redraws the background)."""

    def decorate(self) -> list[Any]:
        """Create the static artists that depend on the data (legends, notes); the dashboard
        removes them before the next full redraw."""
        return []

    @classmethod
    def room_right(cls, history: History) -> float:
        """Inches the panel needs right of its axes for labels of its own (in the column gap)."""
        return 0.0

    def settle(self, renderer: Any) -> bool:
        """Called after a full redraw, to place what needs the drawn layout measured; returns True
        when it moved something (the dashboard then draws the background again)."""
        return False

    def after_background(self) -> None:
        """Called after each full redraw."""

    def forget_limits(self) -> None:
        """Before another run's history: the limits set so far are set again by ``set_history``
        (a full redraw may have widened them)."""
        self.limits = None
        error = getattr(self, "error", None)
        if error is not None and hasattr(error, "limits"):
            error.limits = None

    @abstractmethod
    def show(self, frame: Frame) -> None:
        """Give the moving artists the data of ``frame``."""

    def draw(self) -> None:
        """Draw the moving artists over the restored background."""
        for artist in self.animated:
            self.ax.draw_artist(artist)


# ----------------------------------------------------------------------------- the fit


class FitPanel(Panel):
    """The prediction against the target on the plot grid, with a note when the prediction is
    not finite. Subclasses draw one input geometry."""

    name = "fit"
    pads: ClassVar[tuple[float, float]] = (0.04, 0.04)  # of the value axis, below and above
    headroom: ClassVar[Optional[float]] = None  # see scales.fit_limits

    def __init__(self, fig: Figure, rect: Sequence[float], history: History, meta: dict, look: Look):
        super().__init__(fig, rect, history, meta, look)
        self.geometry = history.geometry
        self.limits: Optional[scales.Limits] = None
        self.clip: scales.Limits = (-math.inf, math.inf)
        self._build(history.geometry)
        note_style = dict(ha="right", va="bottom", color=COLORS["diverged"], fontsize=look.font_size * 0.95,
                          fontweight="bold", animated=True, zorder=6)
        self.fit_note = self._note_text(**note_style)
        self.range_note = self._range_note_text(**{**note_style, "va": "top", "fontsize": look.font_size * 0.85})

    @abstractmethod
    def _build(self, geometry: Geometry) -> None:
        """Create the panel's artists for ``geometry``."""

    def _note_text(self, **style: Any) -> Any:
        return self.ax.text(0.99, 0.03, "", transform=self.ax.transAxes, **style)

    def _range_note_text(self, **style: Any) -> Any:
        """The note naming the true extremes of a prediction drawn clipped (below the legend strip)."""
        return self.ax.text(0.99, 1 - self.legend_strip, "", transform=self.ax.transAxes, **style)

    @property
    def legend_strip(self) -> float:
        """The axes fraction the legend takes at the top of the panel."""
        return 0.02

    @abstractmethod
    def _apply_limits(self, limits: scales.Limits) -> None:
        """Set the value axis (and whatever follows it) to ``limits``."""

    @abstractmethod
    def _show_prediction(self, prediction: Optional[np.ndarray]) -> None:
        """Give the prediction's artists the values of ``prediction`` (None: nothing to show)."""

    def set_history(self, view: RunView) -> Hashable:
        self.geometry = view.history.geometry
        limits, self.clip = scales.fit_limits(self.geometry.plot_target, view.predictions, pad_lo=self.pads[0],
                                              pad_hi=self.pads[1], headroom=self.headroom)
        if limits != self.limits:
            self.limits = limits
            self._apply_limits(limits)
        return limits

    def show(self, frame: Frame) -> None:
        self._show_prediction(frame.prediction)
        pred = frame.prediction
        bad = 0 if pred is None else int(np.count_nonzero(~np.isfinite(pred)))
        self.fit_note.set_text(f"prediction not finite at {bad / len(pred):.0%} of the points" if bad else "")
        self.range_note.set_text(pointwise.off_scale_note(pred, self.clip))

    def draw(self) -> None:
        super().draw()
        for note in (self.fit_note, self.range_note):
            if note.get_text():
                self.ax.draw_artist(note)


class FitPanel1D(FitPanel):
    """A 1D fit: prediction and target curves over x, the training box shaded; for a PDE run
    the collocation and boundary points as a rug and |u − u*| on a log axis at the right."""

    headroom = 0.05

    @classmethod
    def room_right(cls, history: History) -> float:
        return 0.8 if pointwise.is_pde(history.geometry) else 0.0  # the |u − u*| axis

    def _build(self, g: Geometry) -> None:
        ax, scale = self.ax, self.look.scale
        x = np.asarray(g.plot_x, dtype=np.float64).reshape(len(g.plot_target), -1)[:, 0]
        self._order = np.argsort(x)
        self._x = x[self._order]
        lo, hi = g.train_box
        ax.axvspan(lo, hi, color=COLORS["train_box"], alpha=0.10, lw=0, label="training box")
        for v in (lo, hi):
            ax.axvline(v, color=COLORS["train_box"], lw=0.8, alpha=0.6)
        target = np.asarray(g.plot_target, dtype=np.float64)[self._order]
        ax.plot(self._x, np.where(np.isfinite(target), target, np.nan), color=COLORS["target"], lw=2.6, alpha=0.35,
                label="exact solution u*" if pointwise.is_pde(g) else "target", solid_capstyle="round")
        if len(g.train_y):  # a pure-physics run has no training points
            tx = np.asarray(g.train_x, dtype=np.float64).reshape(len(g.train_y), -1)[:, 0]
            ax.plot(tx, np.asarray(g.train_y, dtype=np.float64), "o", ms=3.2 * max(scale, 0.6),
                    color=COLORS["train_points"], label="training points", zorder=3)
        pointwise.rug(ax, g, scale)
        (self.pred_line,) = ax.plot([], [], color=COLORS["prediction"], lw=2.0, label="prediction", animated=True, zorder=4)
        self.animated = [self.pred_line]
        self.error = None
        if pointwise.is_pde(g):
            self.error = pointwise.ErrorAxis1D(ax, self._x, self._order, g.plot_target, self.look.font_size)
        ax.set_xlim(float(self._x.min()), float(self._x.max()))
        ax.set_xlabel(pointwise.axis_names(g)[0])
        ax.set_ylabel(pointwise.value_label(g))
        ax.set_title(f"Fit on the test box {_fmt_box(g.test_box)}, training box {_fmt_box(g.train_box)}", loc="left", y=1.0)
        self._legend(g)

    def _legend(self, g: Geometry) -> None:
        """A strip of legend entries above the curves; the value axis leaves room for it."""
        ax = self.ax
        handles, labels = ax.get_legend_handles_labels()
        if self.error is not None:
            handles.append(self.error.line)
            labels.append(self.error.line.get_label())
        keys = ("prediction", "target", "exact solution u*", "training points", "collocation points", "boundary points",
                "|u − u*| (right axis)", "training box")
        order = [labels.index(k) for k in keys if k in labels]
        ncol = 4 if len(order) <= 4 else 3
        self._rows = -(-len(order) // ncol)
        self.pads = (0.06, 0.30 + 0.16 * (self._rows - 1))
        ax.legend([handles[i] for i in order], [labels[i] for i in order], loc="upper center", ncol=ncol, frameon=False,
                  handlelength=1.6, columnspacing=1.4, borderaxespad=0.4)

    @property
    def legend_strip(self) -> float:
        return 0.03 + 0.075 * getattr(self, "_rows", 1)

    def set_history(self, view: RunView) -> Hashable:
        state = super().set_history(view)
        return state if self.error is None else (state, self.error.set_limits(view.predictions))

    def draw(self) -> None:
        super().draw()
        if self.error is not None:
            self.error.draw()

    def _apply_limits(self, limits: scales.Limits) -> None:
        self.ax.set_ylim(*limits)

    def _show_prediction(self, prediction: Optional[np.ndarray]) -> None:
        if prediction is None:
            self.pred_line.set_data([], [])
            if self.error is not None:
                self.error.show(None)
            return
        y = np.asarray(prediction, dtype=np.float64)[self._order]
        y = np.where(np.isfinite(y), np.clip(y, *self.clip), np.nan)
        self.pred_line.set_data(self._x, y)
        if self.error is not None:
            self.error.show(prediction)


class FitPanel2D(FitPanel):
    """A 2D fit: the prediction as a coloured surface over the target's wireframe, the
    training box and points on the floor of the 3D box."""

    projection = "3d"
    reusable = False  # settle() shrinks the 3D box and moves the legend for the run it measured

    def _build(self, g: Geometry) -> None:
        from mpl_toolkits.mplot3d.art3d import Line3DCollection, Poly3DCollection

        ax, scale = self.ax, self.look.scale
        n = int(g.plot_shape[0])
        grid = np.asarray(g.plot_x, dtype=np.float64).reshape(n, n, 2)
        # a coarser sub-grid when the plot grid is fine: quads of our own, no plot_surface
        sub = np.unique(np.round(np.linspace(0, n - 1, min(n, MAX_SURFACE_CELLS + 1))).astype(int))
        flat = sub[:, None] * n + sub[None, :]  # (m, m) indices into the flat plot grid
        X, Y = grid[sub][:, sub, 0], grid[sub][:, sub, 1]
        corners = np.stack([flat[:-1, :-1], flat[1:, :-1], flat[1:, 1:], flat[:-1, 1:]], axis=-1).reshape(-1, 4)
        self._quad_index = corners  # (cells, 4) into the flat grid
        xy = np.asarray(g.plot_x, dtype=np.float64)[corners]  # (cells, 4, 2)
        self.verts = np.concatenate([xy, np.zeros(xy.shape[:2] + (1,))], axis=-1)
        self.norm = Normalize(0.0, 1.0)
        self.surface = Poly3DCollection(self.verts.copy(), cmap="viridis", norm=self.norm, edgecolor=(0, 0, 0, 0.18),
                                        linewidth=0.25 * max(scale, 0.5), alpha=0.92, animated=True)
        self.surface.set_array(np.zeros(len(corners)))
        ax.add_collection3d(self.surface)
        Tz = np.nan_to_num(np.asarray(g.plot_target, dtype=np.float64)[flat])
        segs = [np.column_stack([X[i], Y[i], Tz[i]]) for i in range(len(sub))]
        segs += [np.column_stack([X[:, j], Y[:, j], Tz[:, j]]) for j in range(len(sub))]
        self.wire = Line3DCollection(segs, colors=[(0.1, 0.1, 0.1, 0.45)], linewidths=0.55 * max(scale, 0.6), animated=True)
        ax.add_collection3d(self.wire)
        self.animated = [self.wire]
        self._has_prediction = False
        ax.set_xlim(float(grid[..., 0].min()), float(grid[..., 0].max()))
        ax.set_ylim(float(grid[..., 1].min()), float(grid[..., 1].max()))
        ax.view_init(elev=28, azim=-58)
        names = pointwise.axis_names(g)
        ax.set_xlabel(names[0], labelpad=-2)
        ax.set_ylabel(names[1], labelpad=-2)
        ax.set_zlabel(pointwise.value_label(g), labelpad=-2)
        ax.tick_params(pad=0)
        self._zoom = 1.12
        ax.set_box_aspect((1.0, 1.0, 0.62), zoom=self._zoom)
        ax.set_anchor("W")  # the 3D box is square: keep the free width on the right, for the legend
        self.error = pointwise.ErrorInset2D(self.fig, g, self.look.font_size) if pointwise.is_pde(g) else None
        self._free_left: Optional[float] = None  # where the free column right of the 3D box starts (measured)
        self._title(g)

    def _title(self, g: Geometry) -> None:
        """Figure-level, over the panel's rectangle: a 3D axes has no room of its own for it."""
        x0, y0, w, h = self.rect
        self.fig.text(x0, y0 + h + 0.06 * self.look.scale / self.fig.get_size_inches()[1],
                      f"Fit on the test box {_fmt_box(g.test_box)}²", ha="left", va="bottom", fontsize=self.look.font_size * 1.08)

    def _legend(self) -> Any:
        """In the free column right of the 3D box and its tick labels, at the panel's top."""
        g = self.geometry
        pde = pointwise.is_pde(g)
        handles = [
            Patch(facecolor=mpl.colormaps["viridis"](0.6), edgecolor="none", label="prediction"),
            Line2D([], [], color=(0.1, 0.1, 0.1, 0.55), lw=1.0, label="exact solution u*" if pde else "target"),
            Line2D([], [], color=COLORS["train_box"], lw=1.8, label=f"training box\n{_fmt_box(g.train_box)}²"),
        ]
        if len(g.train_y):
            handles.append(Line2D([], [], ls="none", marker="o", ms=3, color=COLORS["train_points"], label="training inputs"))
        handles += pointwise.legend_handles(g)
        x0, y0, w, h = self.rect
        left = self._free_left if self._free_left is not None else x0 + 0.72 * w
        return self.fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(left, y0 + h), frameon=False,
                               borderaxespad=0.0, handlelength=1.5)

    def _note_text(self, **style: Any) -> Any:
        return self.ax.text2D(0.99, 0.02, "", transform=self.ax.transAxes, **style)

    def _range_note_text(self, **style: Any) -> Any:
        return self.ax.text2D(0.99, 0.5, "", transform=self.ax.transAxes, **style)

    def _apply_limits(self, limits: scales.Limits) -> None:
        self.ax.set_zlim(*limits)
        self.norm.vmin, self.norm.vmax = limits
        self.surface.set_norm(self.norm)

    def set_history(self, view: RunView) -> Hashable:
        state = super().set_history(view)
        return state if self.error is None else (state, self.error.set_limits(view.predictions))

    def decorate(self) -> list[Any]:
        """Training box and points on the floor of the 3D box (the floor moves with z limits), the legend."""
        ax, g = self.ax, self.geometry
        z0 = self.limits[0]
        lo, hi = g.train_box
        (box,) = ax.plot([lo, hi, hi, lo, lo], [lo, lo, hi, hi, lo], [z0] * 5, color=COLORS["train_box"], lw=1.8, zorder=2)
        tx = np.asarray(g.train_x, dtype=np.float64).reshape(-1, 2)
        pts = ax.scatter(tx[:, 0], tx[:, 1], np.full(len(tx), z0), s=4 * max(self.look.scale, 0.5), c=COLORS["train_points"],
                         depthshade=False, alpha=0.7)
        self.legend = self._legend()
        return [box, pts, self.legend] + pointwise.floor_points(ax, g, z0, self.look.scale)

    def settle(self, renderer: Any) -> bool:
        """Measured after a full draw: move the legend (and the error map) right of the 3D box's
        tick labels, shrinking the box when the legend has no room there; True when something
        moved (the background must be drawn again)."""
        w_in, h_in = self.fig.get_size_inches()
        fig_w = self.fig.bbox.width
        right = self.ax.get_tightbbox(renderer).x1 / fig_w + 0.08 * self.look.scale / w_in
        moved = self._free_left is None or abs(right - self._free_left) * fig_w > 1.0
        self._free_left = right
        self.legend.set_bbox_to_anchor((right, self.rect[1] + self.rect[3]), transform=self.fig.transFigure)
        box = self.legend.get_window_extent(renderer).transformed(self.fig.transFigure.inverted())
        limit = self.rect[0] + self.rect[2] + 0.3 * self.look.scale / w_in  # the next panel's tick labels start after
        if box.x1 > limit and self._zoom > 0.6:
            self._zoom *= 0.9
            self.ax.set_box_aspect((1.0, 1.0, 0.62), zoom=self._zoom)
            return True
        self._place_labels_right(renderer)
        if self.error is not None:
            self.error.place(right, box.y0 - 0.3 * self.look.scale / h_in, min(box.width, limit - right), w_in / h_in)
        return moved

    def _place_labels_right(self, renderer: Any) -> None:
        """The notes at the right of the 3D box, below the legend."""
        box = self.legend.get_window_extent(renderer).transformed(self.ax.transAxes.inverted())
        self.range_note.set_position((1.0, box.y0 - 0.03))
        self.range_note.set_horizontalalignment("right")

    def after_background(self) -> None:
        self.wire.do_3d_projection()  # static: projected once per view

    def _show_prediction(self, prediction: Optional[np.ndarray]) -> None:
        self._has_prediction = prediction is not None
        if self.error is not None:
            self.error.show(prediction)
        if prediction is None:
            return
        lo, hi = self.clip
        z = np.clip(np.nan_to_num(prediction, nan=lo, posinf=hi, neginf=lo), lo, hi)  # the floor: a 'hole'
        self.verts[..., 2] = z[self._quad_index]
        self.surface.set_verts(self.verts)
        self.surface.set_array(self.verts[..., 2].mean(axis=1))

    def draw(self) -> None:
        if self._has_prediction:
            self.surface.do_3d_projection()
            self.ax.draw_artist(self.surface)
        super().draw()
        if self.error is not None:
            self.error.draw()


FIT_PANELS: dict[int, type[FitPanel]] = {1: FitPanel1D, 2: FitPanel2D}  # by input dimension


def fit_panel(geometry: Geometry) -> type[FitPanel]:
    """The fit panel of a run's input geometry; other dimensions show their first coordinate."""
    return FIT_PANELS.get(int(geometry.input_dim), FitPanel1D)

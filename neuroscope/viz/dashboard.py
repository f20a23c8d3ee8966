"""The dashboard figure: its panels placed from margins in inches, the header above them, and
frames drawn by blitting (a cached background, then only what moves). What a panel draws is
the panel's business (``panels``, ``curves``).

Speed comes from drawing every static thing once: axes, ticks, legends and the target go into
the cached background; each frame restores it and draws only the moving artists. Axis limits
are fixed over the whole run (quantized in the live view), so full redraws are rare.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Iterator, Optional, Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..config import VizConfig
from ..rundir import INTERRUPTED, History
from . import placement, scales
from .curves import LossPanel, ProjectionPanel, SharpnessPanel, edge_of
from .panels import Frame, Look, Panel, RunView, diverged_at, fit_panel
from .style import COLORS

COLUMNS = 2


def default_panels(history: History) -> list[type[Panel]]:
    """A run's panels in reading order (left to right, top to bottom)."""
    return [fit_panel(history.geometry), LossPanel, SharpnessPanel, ProjectionPanel]


def layout_key(history: History, viz: VizConfig) -> Optional[tuple]:
    """What a dashboard's figure and static artists are made from: the panels, the run's
    geometry (target, points, boxes), its metric columns, whether it has an edge of stability,
    and the viz settings. Two runs with equal keys can share one figure (Dashboard.show_run);
    None when a panel keeps layout of its own (the 3D fit)."""
    classes = default_panels(history)
    if not all(cls.reusable for cls in classes):
        return None
    g = history.geometry
    digest = hashlib.sha1()
    for a in (g.plot_x, g.plot_target, g.train_x, g.train_y, g.train_box, g.test_box, g.collocation_x, g.boundary_x,
              g.plot_shape):
        a = np.ascontiguousarray(np.asarray(a))
        digest.update(f"{a.dtype}{a.shape}".encode())
        digest.update(a.tobytes())
    meta = getattr(history, "meta", None) or {}
    return (tuple(classes), int(g.input_dim), tuple(g.axis_names), digest.hexdigest(), tuple(history.metrics),
            edge_of(meta)[0] is None, repr(viz))


def panel_rects(size: Sequence[float], scale: float, n: int, extra_gap: float = 0.0) -> list[list[float]]:
    """[left, bottom, width, height] in figure fractions of ``n`` panels in rows of COLUMNS,
    from margins in inches scaled with the figure (never recomputed: the layout cannot jump
    between frames); ``extra_gap`` inches widen the gap between columns."""
    w, h = size
    left, right, top, bottom = 0.85 * scale, 0.35 * scale, 1.05 * scale, 0.6 * scale
    col_gap, row_gap = (1.0 + extra_gap) * scale, 0.95 * scale
    rows = -(-n // COLUMNS)
    pw = (w - left - right - (COLUMNS - 1) * col_gap) / COLUMNS
    ph = (h - top - bottom - (rows - 1) * row_gap) / rows
    rects = []
    for i in range(n):
        row, col = divmod(i, COLUMNS)
        x0 = left + col * (pw + col_gap)
        y0 = h - top - ph - row * (ph + row_gap)
        rects.append([x0 / w, y0 / h, pw / w, ph / h])
    return rects


def _agg_figure(viz: VizConfig) -> Figure:
    """An off-screen figure of whole, even pixel sides: x264 needs even sides, and nothing
    gets rescaled."""
    dpi = float(viz.dpi)
    w_px = max(2, int(round(viz.size[0] * dpi / 2)) * 2)
    h_px = max(2, int(round(viz.size[1] * dpi / 2)) * 2)
    figure = Figure(figsize=(w_px / dpi, h_px / dpi), dpi=dpi, facecolor="white")
    FigureCanvasAgg(figure)
    return figure


def run_facts(meta: dict) -> str:
    """The header's second line: the model and the measurement, from what ``meta`` holds
    (absent values are left out): 'width 16 · depth 2 · tanh · 321 parameters · k = 1'."""
    parts = []
    for key, fmt in (("width", "width {}"), ("depth", "depth {}"), ("activation", "{}")):
        if meta.get(key) not in (None, ""):
            parts.append(fmt.format(meta[key]))
    n = meta.get("n_params")
    if isinstance(n, (int, float)) and not isinstance(n, bool):
        parts.append(f"{int(n):,} parameters")
    if isinstance(meta.get("k"), int):
        parts.append(f"k = {meta['k']}")
    return "   ·   ".join(parts)


class Dashboard:
    """The figure and its panels, created once; ``update(i)`` draws frame ``i`` of
    ``n_frames`` by blitting (restore the cached background, draw what moves).

    The frames are ``viz.frames`` evenly spaced picks of the stored prediction frames (all of
    them in the live view). Curves grow up to the frame's step; the last frame shows the whole
    run. Pass ``figure`` to draw into a pyplot (GUI) figure; by default an Agg canvas is used.
    ``meta`` overrides the run's summary (a live run has none yet); ``panels`` replaces the
    default panel classes.
    """

    def __init__(self, history: History, viz: VizConfig, *, figure: Optional[Figure] = None, live: bool = False,
                 meta: Optional[dict] = None, panels: Optional[Sequence[type[Panel]]] = None):
        self.viz = viz
        self.live = live
        self._meta_override = dict(meta or {})
        self.fig = figure if figure is not None else _agg_figure(viz)
        self.canvas = self.fig.canvas
        w_in, h_in = self.fig.get_size_inches()
        scale = float(min(w_in / 12.0, h_in / 9.0))
        fs = float(np.clip(10.0 * scale, 5.5, 13.0))
        self._look = Look(scale=scale, font_size=fs, live=live)
        self._rc = {
            "font.size": fs,
            "axes.titlesize": fs * 1.08,
            "axes.labelsize": fs,
            "xtick.labelsize": fs * 0.9,
            "ytick.labelsize": fs * 0.9,
            "legend.fontsize": fs * 0.86,
            "axes.linewidth": 0.8,
            "path.simplify": True,
        }
        self._background = None
        self._stale = True
        self._state: Any = None
        self._decor: list[Any] = []
        self.history = history
        self._default_panels = panels is None
        classes = list(panels) if panels is not None else default_panels(history)
        with mpl.rc_context(self._rc):
            extra = max([cls.room_right(history) for cls in classes[:-1]] + [0.0])
            rects = panel_rects((w_in, h_in), scale, len(classes), extra)
            self._build_header(rects)
            meta = self._meta(history)
            self.panels: dict[str, Panel] = {
                cls.name: cls(self.fig, rect, history, meta, self._look) for cls, rect in zip(classes, rects)
            }
        self.set_history(history)

    @property
    def ax(self) -> dict[str, Axes]:
        """Each panel's axes, by panel name."""
        return {name: panel.ax for name, panel in self.panels.items()}

    def _build_header(self, rects: list[list[float]]) -> None:
        h_in = self.fig.get_size_inches()[1]
        self._header_y = 1 - 0.3 * self._look.scale / h_in
        self._header_right = max(r[0] + r[2] for r in rects)
        self.title = self.fig.text(rects[0][0], self._header_y, "", ha="left", va="center",
                                   fontsize=self._look.font_size * 1.3, fontweight="bold", animated=True)

    # -- data ---------------------------------------------------------------------------

    def _meta(self, history: History) -> dict:
        meta = dict(getattr(history, "meta", None) or {})
        meta.update(self._meta_override)
        return meta

    def set_history(self, history: History) -> None:
        """Take (a newer version of) the run's history: the panels recompute their curves
        and limits; a change of what the background shows schedules a full redraw."""
        self.history = history
        self.meta = self._meta(history)
        self._steps = np.asarray(history.metrics.get("step", np.empty(0)), dtype=np.float64)
        stored = len(history.frame_steps)
        if stored == 0:
            self._frame_idx = np.empty(0, dtype=int)
        elif self.live or self.viz.frames >= stored:
            self._frame_idx = np.arange(stored)
        else:
            self._frame_idx = np.unique(np.round(np.linspace(0, stored - 1, self.viz.frames)).astype(int))
        self._frame_steps = np.asarray(history.frame_steps, dtype=np.float64)
        self._frame_pred = np.asarray(history.frame_pred, dtype=np.float64)
        shown = self._frame_pred[self._frame_idx] if len(self._frame_idx) else np.empty(0)
        time_x = scales.time_limits(self._steps, self.meta.get("steps"), live=self.live)
        view = RunView(history=history, meta=self.meta, steps=self._steps, time_x=time_x, predictions=shown)
        state = tuple(panel.set_history(view) for panel in self.panels.values())
        state += (diverged_at(self.meta), self.meta.get("status"), self.meta.get("name"), self.meta.get("lr"),
                  run_facts(self.meta))
        if state != self._state:
            self._state = state
            self._stale = True

    def show_run(self, history: History) -> bool:
        """Show another run's ``history`` in this figure, as a Dashboard made for it would (the
        same pixels, at a third of the cost: the axes, ticks and static artists are kept); False,
        changing nothing, when its static artists differ (``layout_key``): make a new one."""
        key = layout_key(history, self.viz)
        if self.live or not self._default_panels or key is None or key != layout_key(self.history, self.viz):
            return False
        for panel in self.panels.values():
            panel.forget_limits()
        self._state = None
        self.set_history(history)
        return True

    @property
    def n_frames(self) -> int:
        return max(1, len(self._frame_idx))

    def frame_step(self, frame_index: int) -> float:
        """The step whose prediction frame ``frame_index`` shows (NaN without frames)."""
        if not len(self._frame_idx):
            return math.nan
        return float(self._frame_steps[self._frame_idx[frame_index]])

    def _frame(self, frame_index: int) -> Frame:
        pred_step = self.frame_step(frame_index)
        prediction = self._frame_pred[self._frame_idx[frame_index]] if len(self._frame_idx) else None
        if frame_index < self.n_frames - 1:
            return Frame(cut=pred_step, now=pred_step, prediction=prediction)
        steps = self._steps[np.isfinite(self._steps)]  # the last frame shows the whole run
        now = float(steps[-1]) if len(steps) else (pred_step if math.isfinite(pred_step) else 0.0)
        return Frame(cut=math.inf, now=now, prediction=prediction)

    # -- header -------------------------------------------------------------------------

    def _title_text(self, step: float, pred_step: float) -> str:
        """The moving part of the header: the step (short text: it is drawn every frame)."""
        total = self.meta.get("steps")
        text = f"step {int(step):,}" if math.isfinite(step) else "step –"
        if isinstance(total, (int, float)) and total > 0:
            text += f" / {int(total):,}"
        if math.isfinite(pred_step) and math.isfinite(step) and int(pred_step) != int(step):
            text += f"  (fit at {int(pred_step):,})"
        return text

    def _header_decor(self) -> list[Any]:
        """The static part of the header: run name and lr, and the run's fate on the right."""
        fs = self._look.font_size * 1.3
        out = []
        diverged, at = diverged_at(self.meta)
        banner = None
        if diverged:
            banner = (f"DIVERGED at step {int(at):,}" if at is not None else "DIVERGED", COLORS["diverged"])
        elif self.meta.get("status") == INTERRUPTED:
            banner = ("INTERRUPTED", COLORS["interrupted"])
        if banner is not None:
            out.append(self.fig.text(self._header_right, self._header_y, banner[0], ha="right", va="center",
                                     color=banner[1], fontsize=fs, fontweight="bold"))
        parts = [str(self.meta["name"])] if self.meta.get("name") else []
        lr = self.meta.get("lr")
        if isinstance(lr, (int, float)):
            parts.append(f"lr = {lr:g}")
        if parts:
            out.append(self.fig.text(0.5, self._header_y, "   ·   ".join(parts), ha="center", va="center", fontsize=fs,
                                     fontweight="bold"))
        facts = run_facts(self.meta)
        if facts:
            y = self._header_y - 0.27 * self._look.scale / self.fig.get_size_inches()[1]
            out.append(self.fig.text(0.5, y, facts, ha="center", va="center", fontsize=self._look.font_size * 0.95,
                                     color="#444444"))
        return out

    # -- drawing ------------------------------------------------------------------------

    def invalidate(self) -> None:
        """Force a full redraw on the next update (e.g. after a window resize)."""
        self._stale = True

    def _redraw_background(self) -> None:
        with mpl.rc_context(self._rc):
            for artist in self._decor:
                artist.remove()
            self._decor = [a for panel in self.panels.values() for a in panel.decorate()] + self._header_decor()
            self.canvas.draw()  # animated artists are skipped: this is the background
            renderer = placement.renderer_of(self.fig)
            for _ in range(4 if renderer is not None else 0):  # panels that place things by the drawn layout
                if not any([panel.settle(renderer) for panel in self.panels.values()]):
                    break
                self.canvas.draw()
        self._background = self.canvas.copy_from_bbox(self.fig.bbox)
        for panel in self.panels.values():
            panel.after_background()
        self._stale = False

    def update(self, frame_index: int) -> None:
        """Draw frame ``frame_index`` (0 <= i < n_frames) into the canvas."""
        n = self.n_frames
        if not 0 <= frame_index < n:
            raise IndexError(f"frame {frame_index} of {n}")
        if self._stale or self._background is None:
            self._redraw_background()
        frame = self._frame(frame_index)
        for panel in self.panels.values():
            panel.show(frame)
        self.title.set_text(self._title_text(frame.now, self.frame_step(frame_index)))
        self.canvas.restore_region(self._background)
        for panel in self.panels.values():
            panel.draw()
        self.fig.draw_artist(self.title)
        if self.live:
            self.canvas.blit(self.fig.bbox)

    def rgba(self) -> np.ndarray:
        """The canvas pixels, (height, width, 4) uint8 (a view: copy it to keep a frame)."""
        return np.asarray(self.canvas.buffer_rgba())

    def frames(self, start: int = 0, stop: Optional[int] = None) -> Iterator[np.ndarray]:
        """Draw frames ``start`` to ``stop`` (default: every frame) in order, yielding the canvas
        pixels after each. A frame's pixels do not depend on the frames drawn before it."""
        for i in range(start, self.n_frames if stop is None else stop):
            self.update(i)
            yield self.rgba()

"""Dashboard pictures of a NeuroScope run: the 2x2 figure (fit, losses and errors, sharpness
against 2/lr, |Δθ·v_max|), drawn from the run's files alone into ``dashboard.png`` and an
MP4 (or GIF) animation, plus the same figure as a live window while training.

Speed comes from drawing every static thing once: the axes, ticks, legends and the target are
rendered into a cached background; each frame restores it and draws only the artists that
move (blitting), and the RGBA buffer is piped straight to ffmpeg. Axis limits are fixed over
the whole run (quantized in the live view), so full redraws are rare.

Command line: ``neuroscope-render RUN_DIR [viz.format=gif viz.fps=10 ...]`` re-renders a run.
Tests force the MP4 failure path by monkeypatching :func:`write_mp4` to raise.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from .config import ConfigError, VideoFormat, VizConfig
from .rundir import History, load

log = logging.getLogger(__name__)

from .rundir import ANIMATION_GIF, ANIMATION_MP4, DASHBOARD_PNG  # noqa: E402
from .rundir import CONFIG_YAML as HYDRA_CONFIG  # noqa: E402

from .viz.style import COLORS, EXTRA_TERM_COLORS, LAMBDA_COLORS, TERM_COLORS  # noqa: E402

MAX_LINE_POINTS = 2400  # per curve; longer runs are min/max-decimated (spikes survive)
MAX_SURFACE_CELLS = 40  # per side of the 3D surface
SPARSE_POINTS = 40  # curves with this few points get a dot at each


@dataclass
class RenderResult:
    png: Path
    video: Optional[Path]  # None when viz.format=none or no writer worked
    frames: int  # frames in the video (0 without one)
    seconds: float


# ----------------------------------------------------------------------------- viz settings


def resolve_viz(viz: Any = None, run_dir: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> VizConfig:
    """A validated VizConfig from a VizConfig, a mapping/DictConfig with its keys, or (None)
    the ``viz`` section of ``run_dir/.hydra/config.yaml`` (defaults if absent), with dotlist
    ``overrides`` (``format=gif`` or ``viz.format=gif``) on top. Raises ConfigError."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    layers: list[Any] = []
    if viz is None and run_dir is not None:
        path = Path(run_dir) / HYDRA_CONFIG
        if path.exists():
            try:
                section = OmegaConf.load(path).get("viz")
                if section is not None:
                    OmegaConf.merge(OmegaConf.structured(VizConfig), section)  # is it usable?
                    layers.append(section)
            except (OmegaConfBaseException, OSError, ValueError) as e:
                log.warning("ignoring the viz settings in %s (%s); using the defaults", path, _first_line(e))
    elif isinstance(viz, VizConfig):
        layers.append(OmegaConf.structured(viz))
    elif isinstance(viz, (DictConfig, dict)):
        if "viz" in viz and "format" not in viz:  # a whole run config was handed over
            viz = viz["viz"]
        layers.append(OmegaConf.structured(viz) if isinstance(viz, VizConfig) else viz)
    elif viz is not None:
        raise ConfigError(f"viz={viz!r} is not a viz configuration (give a VizConfig, a mapping with its keys, or None).")

    dotlist = []
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"'{item}' is not an override: write KEY=VALUE, e.g. viz.format=gif.")
        if key.startswith("viz."):
            key = key[4:]
        elif "." in key:
            raise ConfigError(f"'{item}': only viz.* settings can change when re-rendering a finished run.")
        dotlist.append(f"{key}={value}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(VizConfig), *layers, OmegaConf.from_dotlist(dotlist))
        result = OmegaConf.to_object(merged)
    except ConfigKeyError as e:
        key = getattr(e, "full_key", None) or getattr(e, "key", None)
        raise ConfigError(
            f"viz.{key} is not a viz setting (there are: {', '.join(VizConfig.__dataclass_fields__)}); "
            "only viz.* settings can change when re-rendering a finished run."
        ) from None
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        raise ConfigError(f"viz.{key}: {_first_line(e)}" if key else _first_line(e)) from None
    _check_viz(result)
    return result


def _check_viz(v: VizConfig) -> None:
    if v.frames < 1 or v.fps < 1 or v.dpi < 10:
        raise ConfigError(f"viz.frames={v.frames}, viz.fps={v.fps}, viz.dpi={v.dpi}: frames and fps must be >= 1 and dpi >= 10.")
    if len(v.size) != 2 or min(v.size) <= 0:
        raise ConfigError(f"viz.size={list(v.size)} is not allowed: give [width, height] in inches, both > 0.")
    if v.size[0] * v.dpi > 8000 or v.size[1] * v.dpi > 8000:
        raise ConfigError(f"viz.size={list(v.size)} at viz.dpi={v.dpi} is over 8000 pixels a side.")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# ----------------------------------------------------------------------------- data helpers


def _finite_series(x: np.ndarray, y: np.ndarray, *, positive: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The measured, finite points of a metric column (and > 0 for a log axis), decimated
    to MAX_LINE_POINTS keeping each bucket's min and max, so spikes stay visible."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    if positive:
        keep &= y > 0
    x, y = x[keep], y[keep]
    n = len(x)
    if n <= MAX_LINE_POINTS:
        return x, y
    buckets = MAX_LINE_POINTS // 2
    size = -(-n // buckets)
    padded = np.full(buckets * size, np.nan)
    padded[:n] = y
    rows = padded.reshape(buckets, size)
    valid = ~np.all(np.isnan(rows), axis=1)
    base = np.arange(buckets)[valid] * size
    lo = base + np.nanargmin(rows[valid], axis=1)
    hi = base + np.nanargmax(rows[valid], axis=1)
    idx = np.unique(np.concatenate([lo, hi, [0, n - 1]]))
    return x[idx], y[idx]


_NICE = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


def _nice_ceil(v: float) -> float:
    """The smallest 'round' number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k) >= v."""
    if not v > 0 or not math.isfinite(v):
        return 1.0
    e = math.floor(math.log10(v))
    m = v / 10**e
    for n in _NICE:
        if m <= n * (1 + 1e-9):
            return n * 10**e
    return 10.0 ** (e + 1)


def _linear_limits(lo: float, hi: float, *, pad_lo: float = 0.06, pad_hi: float = 0.06) -> tuple[float, float]:
    """Limits around [lo, hi] with padding, rounded outward to a 'nice' step (so growing data
    in the live view crosses them rarely)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return (-1.0, 1.0)
    if hi - lo < 1e-12 * max(1.0, abs(hi)):
        lo, hi = lo - 0.5 * max(1.0, abs(lo)), hi + 0.5 * max(1.0, abs(hi))
    span = hi - lo
    lo, hi = lo - pad_lo * span, hi + pad_hi * span
    step = _nice_ceil((hi - lo) / 8)
    return (math.floor(lo / step) * step, math.ceil(hi / step) * step)


def _log_limits(values: Iterable[np.ndarray]) -> tuple[float, float]:
    """Whole decades around every positive finite value (at most 16 decades below the top)."""
    arrays = [v[np.isfinite(v) & (v > 0)] for v in values]
    arrays = [a for a in arrays if len(a)]
    if not arrays:
        return (1e-3, 1.0)
    hi = max(float(a.max()) for a in arrays)
    lo = max(min(float(a.min()) for a in arrays), hi * 1e-16)
    lo_e, hi_e = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    if hi_e <= lo_e:
        hi_e = lo_e + 1
    return (10.0**lo_e, 10.0**hi_e)


def _fmt_box(box: Sequence[float]) -> str:
    return f"[{box[0]:.3g}, {box[1]:.3g}]"


def _term_label(column: str) -> str:
    return column[len("loss_"):].replace("_", " ") + " term"


def _lambda_index(column: str) -> int:
    return int(column.split("_")[1])


# ----------------------------------------------------------------------------- the dashboard


@dataclass
class _Series:
    column: str
    ax_name: str  # "loss" | "sharp" | "proj"
    line: Line2D
    x: np.ndarray
    y: np.ndarray


class Dashboard:
    """The 2x2 figure and its artists, created once; ``update(i)`` draws frame ``i`` of
    ``n_frames`` by blitting (restore the cached background, draw what moves).

    The frames are ``viz.frames`` evenly spaced picks of the stored prediction frames (all of
    them in the live view). Curves grow up to the frame's step; the last frame shows the whole
    run. Pass ``figure`` to draw into a pyplot (GUI) figure; by default an Agg canvas is used.
    """

    def __init__(self, history: History, viz: VizConfig, *, figure: Optional[Figure] = None, live: bool = False, meta: Optional[dict] = None):
        self.viz = viz
        self.live = live
        self._meta_override = dict(meta or {})
        dpi = float(viz.dpi)
        # whole, even pixel sizes: x264 needs even sides and nothing gets rescaled
        w_px = max(2, int(round(viz.size[0] * dpi / 2)) * 2)
        h_px = max(2, int(round(viz.size[1] * dpi / 2)) * 2)
        if figure is None:
            figure = Figure(figsize=(w_px / dpi, h_px / dpi), dpi=dpi, facecolor="white")
            FigureCanvasAgg(figure)
        self.fig = figure
        self.canvas = figure.canvas
        w_in, h_in = figure.get_size_inches()
        self._scale = float(min(w_in / 12.0, h_in / 9.0))
        fs = float(np.clip(10.0 * self._scale, 5.5, 13.0))
        self._fs = fs
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
        self._limits: dict[str, tuple] = {}
        self._decor: list[Any] = []
        self._decor_key: Any = None
        self.history = history
        with mpl.rc_context(self._rc):
            self._build(history)
        self.set_history(history)

    # -- layout and artists ------------------------------------------------------------

    def _panel_rects(self) -> list[list[float]]:
        """[left, bottom, width, height] of the four panels from margins in inches (scaled
        with the figure, never recomputed: the layout cannot jump between frames)."""
        w, h = self.fig.get_size_inches()
        s = self._scale
        left, right, top, bottom = 0.85 * s, 0.35 * s, 0.85 * s, 0.6 * s
        col_gap, row_gap = 1.0 * s, 0.95 * s
        pw = (w - left - right - col_gap) / 2
        ph = (h - top - bottom - row_gap) / 2
        rects = []
        for row in (0, 1):
            for col in (0, 1):
                x0 = left + col * (pw + col_gap)
                y0 = h - top - ph - row * (ph + row_gap)
                rects.append([x0 / w, y0 / h, pw / w, ph / h])
        return rects

    def _build(self, history: History) -> None:
        fig = self.fig
        rects = self._panel_rects()
        g = history.geometry
        self.dim = int(g.input_dim)
        if self.dim == 2:
            ax_fit = fig.add_axes(rects[0], projection="3d")
        else:
            ax_fit = fig.add_axes(rects[0])
        self.ax = {
            "fit": ax_fit,
            "loss": fig.add_axes(rects[1]),
            "sharp": fig.add_axes(rects[2]),
            "proj": fig.add_axes(rects[3]),
        }
        w_in, h_in = fig.get_size_inches()
        self._header_y = 1 - 0.34 * self._scale / h_in
        self._header_left = rects[0][0]
        self._header_right = rects[1][0] + rects[1][2]
        self.title = fig.text(self._header_left, self._header_y, "", ha="left", va="center",
                              fontsize=self._fs * 1.3, fontweight="bold", animated=True)
        self._animated: list[Any] = [self.title]
        if self.dim == 2:
            self._build_fit_2d(history)
        else:
            self._build_fit_1d(history)
        self._build_time_panels(history)

    def _build_fit_1d(self, history: History) -> None:
        ax = self.ax["fit"]
        g = history.geometry
        x = np.asarray(g.plot_x, dtype=np.float64).reshape(len(g.plot_target), -1)[:, 0]
        order = np.argsort(x)
        self._fit_order = order
        self._fit_x = x[order]
        lo, hi = g.train_box
        ax.axvspan(lo, hi, color=COLORS["train_box"], alpha=0.10, lw=0, label="training box")
        for v in (lo, hi):
            ax.axvline(v, color=COLORS["train_box"], lw=0.8, alpha=0.6)
        target = np.asarray(g.plot_target, dtype=np.float64)[order]
        ax.plot(self._fit_x, np.where(np.isfinite(target), target, np.nan), color=COLORS["target"], lw=2.6, alpha=0.35,
                label="target", solid_capstyle="round")
        if len(g.train_y):  # a pure-physics run has no training points
            tx = np.asarray(g.train_x, dtype=np.float64).reshape(len(g.train_y), -1)[:, 0]
            ax.plot(tx, np.asarray(g.train_y, dtype=np.float64), "o", ms=3.2 * max(self._scale, 0.6),
                    color=COLORS["train_points"], label="training points", zorder=3)
        (self.pred_line,) = ax.plot([], [], color=COLORS["prediction"], lw=2.0, label="prediction", animated=True, zorder=4)
        self.fit_note = ax.text(0.99, 0.03, "", transform=ax.transAxes, ha="right", va="bottom", color=COLORS["diverged"],
                                fontsize=self._fs * 0.95, fontweight="bold", animated=True, zorder=6)
        self._animated += [self.pred_line, self.fit_note]
        ax.set_xlim(float(self._fit_x.min()), float(self._fit_x.max()))
        ax.set_xlabel("x")
        ax.set_ylabel("f(x)")
        ax.set_title(f"Fit on the test box {_fmt_box(g.test_box)}, training box {_fmt_box(g.train_box)}", loc="left")
        handles, labels = ax.get_legend_handles_labels()
        order = [labels.index(k) for k in ("prediction", "target", "training points", "training box") if k in labels]
        ax.legend([handles[i] for i in order], [labels[i] for i in order], loc="upper center", ncol=4, frameon=False,
                  handlelength=1.6, columnspacing=1.4, borderaxespad=0.4)

    def _build_fit_2d(self, history: History) -> None:
        from mpl_toolkits.mplot3d.art3d import Line3DCollection, Poly3DCollection

        ax = self.ax["fit"]
        g = history.geometry
        n = int(g.plot_shape[0])
        grid = np.asarray(g.plot_x, dtype=np.float64).reshape(n, n, 2)
        # a coarser sub-grid when the plot grid is fine: quads of our own, no plot_surface
        sub = np.unique(np.round(np.linspace(0, n - 1, min(n, MAX_SURFACE_CELLS + 1))).astype(int))
        m = len(sub)
        flat = (sub[:, None] * n + sub[None, :])  # (m, m) indices into the flat plot grid
        X, Y = grid[sub][:, sub, 0], grid[sub][:, sub, 1]
        corners = np.stack([flat[:-1, :-1], flat[1:, :-1], flat[1:, 1:], flat[:-1, 1:]], axis=-1).reshape(-1, 4)
        self._quad_index = corners  # (cells, 4) into the flat grid
        xy = np.asarray(g.plot_x, dtype=np.float64)[corners]  # (cells, 4, 2)
        self._verts = np.concatenate([xy, np.zeros(xy.shape[:2] + (1,))], axis=-1)
        self.norm = Normalize(0.0, 1.0)
        self.surface = Poly3DCollection(self._verts.copy(), cmap="viridis", norm=self.norm, edgecolor=(0, 0, 0, 0.18),
                                        linewidth=0.25 * max(self._scale, 0.5), alpha=0.92, animated=True)
        self.surface.set_array(np.zeros(len(corners)))
        ax.add_collection3d(self.surface)
        target = np.asarray(g.plot_target, dtype=np.float64)
        Tz = np.nan_to_num(target[flat])
        segs = [np.column_stack([X[i], Y[i], Tz[i]]) for i in range(m)] + [np.column_stack([X[:, j], Y[:, j], Tz[:, j]]) for j in range(m)]
        self.wire = Line3DCollection(segs, colors=[(0.1, 0.1, 0.1, 0.45)], linewidths=0.55 * max(self._scale, 0.6), animated=True)
        ax.add_collection3d(self.wire)
        self._animated += [self.surface, self.wire]
        ax.set_xlim(float(grid[..., 0].min()), float(grid[..., 0].max()))
        ax.set_ylim(float(grid[..., 1].min()), float(grid[..., 1].max()))
        ax.view_init(elev=28, azim=-58)
        ax.set_xlabel("x₁", labelpad=-2)
        ax.set_ylabel("x₂", labelpad=-2)
        ax.set_zlabel("f(x)", labelpad=-2)
        ax.tick_params(pad=0)
        ax.set_box_aspect((1.0, 1.0, 0.62), zoom=1.12)
        ax.set_anchor("W")  # the 3D box is square: keep the free width on the right, for the legend
        rect = self._panel_rects()[0]
        self.fig.text(rect[0], rect[1] + rect[3] + 0.06 * self._scale / self.fig.get_size_inches()[1],
                      f"Fit on the test box {_fmt_box(g.test_box)}²", ha="left", va="bottom", fontsize=self._rc["axes.titlesize"])
        handles = [
            Patch(facecolor=mpl.colormaps["viridis"](0.6), edgecolor="none", label="prediction"),
            Line2D([], [], color=(0.1, 0.1, 0.1, 0.55), lw=1.0, label="target"),
            Line2D([], [], color=COLORS["train_box"], lw=1.8, label=f"training box\n{_fmt_box(g.train_box)}²"),
            Line2D([], [], ls="none", marker="o", ms=3, color=COLORS["train_points"], label="training inputs"),
        ]
        self.fig.legend(handles=handles, loc="upper right", bbox_to_anchor=(rect[0] + rect[2], rect[1] + rect[3]), frameon=False,
                        borderaxespad=0.0, handlelength=1.5)
        self.fit_note = ax.text2D(0.99, 0.02, "", transform=ax.transAxes, ha="right", va="bottom", color=COLORS["diverged"],
                                  fontsize=self._fs * 0.95, fontweight="bold", animated=True, zorder=6)
        self._animated.append(self.fit_note)

    def _build_time_panels(self, history: History) -> None:
        A = self.ax
        self.series: list[_Series] = []

        def add(column: str, ax_name: str, label: str, color: str, lw: float, ls: str = "-", alpha: float = 1.0, z: float = 2):
            (line,) = A[ax_name].plot([], [], color=color, lw=lw, ls=ls, alpha=alpha, label=label, animated=True, zorder=z)
            self.series.append(_Series(column, ax_name, line, np.empty(0), np.empty(0)))
            self._animated.append(line)

        m = history.metrics
        if "loss" in m:
            add("loss", "loss", "training loss", COLORS["loss"], 1.9, z=4)
        extra = iter(EXTRA_TERM_COLORS)
        for c in history.loss_terms:
            add(c, "loss", _term_label(c), TERM_COLORS.get(c) or next(extra, "#999999"), 1.1, "--", z=3)
        if "test_error" in m:
            add("test_error", "loss", "test error (in the training box)", COLORS["test_error"], 1.5, z=3)
        if "gen_error" in m:
            add("gen_error", "loss", "generalization error (outside it)", COLORS["gen_error"], 1.5, z=3)
        for i, c in enumerate(history.eigenvalue_columns):
            if c not in m:
                continue
            if c == "sharpness":
                add(c, "sharp", "sharpness λ₁", COLORS["sharpness"], 1.8, z=4)
            else:
                k = _lambda_index(c)
                sub = "".join("₀₁₂₃₄₅₆₇₈₉"[int(d)] for d in str(k))
                add(c, "sharp", f"λ{sub}", LAMBDA_COLORS[(i - 1) % len(LAMBDA_COLORS)], 1.1, z=3)
        if "projection" in m:
            add("projection", "proj", "|Δθ·v_max|", COLORS["projection"], 1.3, z=3)

        self.now_lines = []
        for name in ("loss", "sharp", "proj"):
            line = A[name].axvline(0, color=COLORS["now"], lw=0.9, ls=":", alpha=0.8, animated=True, zorder=1)
            self.now_lines.append(line)
            self._animated.append(line)

        A["loss"].set_yscale("log")
        A["proj"].set_yscale("log")
        A["loss"].set_title("Loss terms and errors", loc="left")
        A["sharp"].set_title("Sharpness (top Hessian eigenvalue) vs the 2/lr edge of stability", loc="left")
        A["proj"].set_title("|Δθ·v_max|: the update along the top eigenvector", loc="left")
        A["sharp"].set_ylabel("eigenvalue")
        A["loss"].set_ylabel("value (log)")
        A["proj"].set_ylabel("|Δθ·v_max| (log)")
        for name in ("loss", "sharp", "proj"):
            A[name].set_xlabel("step")
            A[name].grid(True, which="major", lw=0.5, alpha=0.35)
        for ax in self.ax.values():
            if self.dim == 2 and ax is self.ax["fit"]:
                continue
            ax.margins(x=0)

        self.eos_line = None
        lr = self._meta(history).get("lr")
        self.threshold = 2.0 / float(lr) if isinstance(lr, (int, float)) and lr > 0 else None
        if self.threshold is not None:
            self.eos_line = A["sharp"].axhline(self.threshold, color=COLORS["eos"], lw=1.6, ls="--",
                                               label=f"2/lr = {self.threshold:.4g}", zorder=2)

    # -- data ---------------------------------------------------------------------------

    def _meta(self, history: History) -> dict:
        meta = dict(getattr(history, "meta", None) or {})
        meta.update(self._meta_override)
        return meta

    def set_history(self, history: History) -> None:
        """Take (a newer version of) the run's history: recompute the curves, the frames and
        the limits; a change of limits or of the static notes schedules a full redraw."""
        self.history = history
        self.meta = self._meta(history)
        m = history.metrics
        steps = np.asarray(m.get("step", np.empty(0)), dtype=np.float64)
        self._steps = steps
        log_axes = {"loss", "proj"}
        for s in self.series:
            col = np.asarray(m.get(s.column, np.full(len(steps), np.nan)), dtype=np.float64)
            s.x, s.y = _finite_series(steps[: len(col)], col[: len(steps)], positive=s.ax_name in log_axes)
            # few measurements (a short or early-diverged run): dots, so a single one still shows
            s.line.set_marker("o" if len(s.x) <= SPARSE_POINTS else "None")
            s.line.set_markersize(3.0 * max(self._scale, 0.6))

        stored = len(history.frame_steps)
        if stored == 0:
            self._frame_idx = np.empty(0, dtype=int)
        elif self.live or self.viz.frames >= stored:
            self._frame_idx = np.arange(stored)
        else:
            self._frame_idx = np.unique(np.round(np.linspace(0, stored - 1, self.viz.frames)).astype(int))
        self._frame_steps = np.asarray(history.frame_steps, dtype=np.float64)
        self._frame_pred = np.asarray(history.frame_pred, dtype=np.float64)

        limits = self._compute_limits()
        if limits != self._limits:
            self._apply_limits(limits)
            self._limits = limits
            self._stale = True
        key = self._decor_state()
        if key != self._decor_key:
            self._decor_key = key
            self._stale = True

    @property
    def n_frames(self) -> int:
        return max(1, len(self._frame_idx))

    def _compute_limits(self) -> dict[str, tuple]:
        lim: dict[str, tuple] = {}
        steps = self._steps[np.isfinite(self._steps)]
        x0 = float(steps[0]) if len(steps) else 0.0
        x1 = float(steps[-1]) if len(steps) else 1.0
        planned = self.meta.get("steps")
        if self.live:
            x1 = float(planned) if isinstance(planned, (int, float)) and planned > x1 else _nice_ceil(max(x1, 1.0))
        if x1 <= x0:
            x1 = x0 + 1.0
        pad = 0.012 * (x1 - x0)  # a dot on the first or last step stays whole
        lim["time_x"] = (x0 - pad, x1 + pad)
        by_ax: dict[str, list[np.ndarray]] = {"loss": [], "sharp": [], "proj": []}
        for s in self.series:
            by_ax[s.ax_name].append(s.y)
        lim["loss_y"] = _log_limits(by_ax["loss"])
        lim["proj_y"] = _log_limits(by_ax["proj"])

        vals = np.concatenate(by_ax["sharp"]) if by_ax["sharp"] else np.empty(0)
        thr = self.threshold
        data_hi = float(vals.max()) if len(vals) else 0.0
        data_lo = float(vals.min()) if len(vals) else 0.0
        if thr is not None:
            # a few wild eigenvalues (a diverging run) must not squash the 2/lr line: they go off
            # scale above max(3 x 2/lr, the 95th percentile); a run that lives far above 2/lr shows whole
            typical = float(np.percentile(vals, 95)) if len(vals) else 0.0
            top = max(1.25 * thr, min(1.08 * data_hi, max(3.0 * thr, 1.08 * typical)))
        else:
            top = 1.08 * data_hi if data_hi > 0 else 1.0
        top = _nice_ceil(top)
        bottom = 0.0 if data_lo >= 0 else -min(_nice_ceil(-1.1 * data_lo), top)
        lim["sharp_y"] = (bottom, top)
        self._sharp_off_scale = data_hi if data_hi > top else None

        # the fit: target plus every shown prediction (an exploding prediction is not allowed
        # to squash the target: it is clipped at 1.5 spans beyond it)
        target = np.asarray(self.history.geometry.plot_target, dtype=np.float64)
        t = target[np.isfinite(target)]
        tlo, thi = (float(t.min()), float(t.max())) if len(t) else (-1.0, 1.0)
        span = max(thi - tlo, 1e-9)
        preds = self._frame_pred[self._frame_idx] if len(self._frame_idx) else np.empty(0)
        p = preds[np.isfinite(preds)]
        lo, hi = tlo, thi
        if len(p):
            lo = min(lo, max(float(p.min()), tlo - 1.5 * span))
            hi = max(hi, min(float(p.max()), thi + 1.5 * span))
        if self.dim == 2:
            lim["fit_y"] = _linear_limits(lo, hi, pad_lo=0.04, pad_hi=0.04)
            lim["fit_clip"] = lim["fit_y"]
        else:
            lim["fit_y"] = _linear_limits(lo, hi, pad_lo=0.06, pad_hi=0.30)  # room for the legend
            # the prediction stays out of the legend's strip: clipped just above the data
            lim["fit_clip"] = (lim["fit_y"][0], hi + 0.05 * (hi - lo))
        return lim

    def _apply_limits(self, lim: dict[str, tuple]) -> None:
        A = self.ax
        for name in ("loss", "sharp", "proj"):
            A[name].set_xlim(*lim["time_x"])
        A["loss"].set_ylim(*lim["loss_y"])
        A["proj"].set_ylim(*lim["proj_y"])
        A["sharp"].set_ylim(*lim["sharp_y"])
        if self.dim == 2:
            A["fit"].set_zlim(*lim["fit_y"])
            self.norm.vmin, self.norm.vmax = lim["fit_y"]
            self.surface.set_norm(self.norm)
        else:
            A["fit"].set_ylim(*lim["fit_y"])

    def _decor_state(self) -> tuple:
        has = tuple(len(s.y) > 0 for s in self.series)
        off = None if self._sharp_off_scale is None else f"{self._sharp_off_scale:.3g}"
        return (has, off, self.meta.get("status"), self.meta.get("diverged_at_step"), self.meta.get("name"), self.meta.get("lr"),
                self._limits.get("fit_y"))

    # -- static decorations (in the background) ------------------------------------------

    def _decorate(self) -> None:
        """Legends and notes that depend on the data; rebuilt only on a full redraw."""
        for a in self._decor:
            a.remove()
        self._decor = []
        A, fs = self.ax, self._fs
        for s in self.series:  # 'best' legend placement looks at the whole run's curves
            s.line.set_data(s.x, s.y)
        for name, loc in (("loss", "best"), ("sharp", "best")):
            ax = A[name]
            handles = [s.line for s in self.series if s.ax_name == name and (self.live or len(s.y))]
            if name == "sharp" and self.eos_line is not None:
                handles.append(self.eos_line)
            if handles:
                leg = ax.legend(handles=handles, labels=[h.get_label() for h in handles], loc=loc, framealpha=0.85,
                                ncol=1, handlelength=1.8, borderaxespad=0.4)
                leg.set_zorder(6)
                self._decor.append(leg)
        missing = {s.column for s in self.series if not len(s.y)}
        note_style = dict(ha="center", va="center", fontsize=fs * 0.95, color="#777777", zorder=6)
        if not self.live:
            if "gen_error" in missing:
                self._decor.append(A["loss"].text(0.02, 0.03, "generalization error: not measured (test box = training box?)",
                                                  transform=A["loss"].transAxes, ha="left", va="bottom", fontsize=fs * 0.8, color="#777777"))
            sharp_cols = [s.column for s in self.series if s.ax_name == "sharp"]
            if not sharp_cols or set(sharp_cols) <= missing:
                self._decor.append(A["sharp"].text(0.5, 0.5, "sharpness not measured (curvature.every=0)", transform=A["sharp"].transAxes, **note_style))
            proj_cols = [s.column for s in self.series if s.ax_name == "proj"]
            if not proj_cols or set(proj_cols) <= missing:
                self._decor.append(A["proj"].text(0.5, 0.5, "|Δθ·v_max| not measured", transform=A["proj"].transAxes, **note_style))
        if self.threshold is not None:
            tr = blended_transform_factory(A["sharp"].transAxes, A["sharp"].transData)
            self._decor.append(A["sharp"].text(0.01, self.threshold, f" 2/lr = {self.threshold:.4g}", transform=tr, ha="left", va="bottom",
                                               color=COLORS["eos"], fontsize=fs * 0.9, fontweight="bold", zorder=5))
        if self._sharp_off_scale is not None:
            self._decor.append(A["sharp"].text(0.99, 0.97, f"↑ off scale (max {self._sharp_off_scale:.3g})", transform=A["sharp"].transAxes,
                                               ha="right", va="top", fontsize=fs * 0.85, color=COLORS["diverged"]))
        status = self.meta.get("status")
        at = self.meta.get("diverged_at_step")
        if status == "diverged" or at is not None:
            where = f"diverged at step {int(at):,}" if isinstance(at, (int, float)) else "diverged"
            for name in ("loss", "sharp", "proj"):
                if isinstance(at, (int, float)):
                    self._decor.append(A[name].axvline(float(at), color=COLORS["diverged"], lw=1.2, ls="--", alpha=0.8, zorder=1))
            self._decor.append(A["loss"].text(0.02, 0.97, where, transform=A["loss"].transAxes, ha="left", va="top",
                                              color=COLORS["diverged"], fontsize=fs, fontweight="bold", zorder=6))
            self._decor.append(self.fig.text(self._header_right, self._header_y, f"DIVERGED at step {int(at):,}" if isinstance(at, (int, float)) else "DIVERGED",
                                              ha="right", va="center", color=COLORS["diverged"], fontsize=fs * 1.3, fontweight="bold"))
        elif status == "interrupted":
            self._decor.append(self.fig.text(self._header_right, self._header_y, "INTERRUPTED", ha="right", va="center",
                                              color=COLORS["interrupted"], fontsize=fs * 1.3, fontweight="bold"))
        header = self._header_text()
        if header:
            self._decor.append(self.fig.text(0.5, self._header_y, header, ha="center", va="center", fontsize=fs * 1.3, fontweight="bold"))
        if self.dim == 2:
            self._decorate_fit_2d()

    def _decorate_fit_2d(self) -> None:
        """Training box and points on the floor of the 3D box (the floor moves with z limits)."""
        ax, g = self.ax["fit"], self.history.geometry
        z0 = self._limits["fit_y"][0]
        lo, hi = g.train_box
        (box,) = ax.plot([lo, hi, hi, lo, lo], [lo, lo, hi, hi, lo], [z0] * 5, color=COLORS["train_box"], lw=1.8, zorder=2)
        tx = np.asarray(g.train_x, dtype=np.float64).reshape(-1, 2)
        pts = ax.scatter(tx[:, 0], tx[:, 1], np.full(len(tx), z0), s=4 * max(self._scale, 0.5), c=COLORS["train_points"],
                         depthshade=False, alpha=0.7)
        self._decor += [box, pts]

    # -- drawing ------------------------------------------------------------------------

    def invalidate(self) -> None:
        """Force a full redraw on the next update (e.g. after a window resize)."""
        self._stale = True

    def _redraw_background(self) -> None:
        with mpl.rc_context(self._rc):
            self._decorate()
            self.canvas.draw()  # animated artists are skipped: this is the background
        self._background = self.canvas.copy_from_bbox(self.fig.bbox)
        if self.dim == 2:
            self.wire.do_3d_projection()  # static: projected once per view
        self._stale = False

    def frame_step(self, frame_index: int) -> float:
        """The step whose prediction frame ``frame_index`` shows (NaN without frames)."""
        if not len(self._frame_idx):
            return math.nan
        return float(self._frame_steps[self._frame_idx[frame_index]])

    def update(self, frame_index: int) -> None:
        """Draw frame ``frame_index`` (0 <= i < n_frames) into the canvas."""
        n = self.n_frames
        if not 0 <= frame_index < n:
            raise IndexError(f"frame {frame_index} of {n}")
        if self._stale or self._background is None:
            self._redraw_background()
        last = frame_index == n - 1
        pred_step = self.frame_step(frame_index)
        steps = self._steps[np.isfinite(self._steps)]
        if last:
            cut = math.inf
            now = float(steps[-1]) if len(steps) else (pred_step if math.isfinite(pred_step) else 0.0)
        else:
            cut = now = pred_step
        for s in self.series:
            k = len(s.x) if last else int(np.searchsorted(s.x, cut, side="right"))
            s.line.set_data(s.x[:k], s.y[:k])
        for line in self.now_lines:
            line.set_xdata([now, now])
        if len(self._frame_idx):
            pred = self._frame_pred[self._frame_idx[frame_index]]
            self._set_prediction(pred)
        elif self.dim == 1:
            self.pred_line.set_data([], [])
        self.title.set_text(self._title_text(now, pred_step))

        self.canvas.restore_region(self._background)
        if self.dim == 2:
            ax3 = self.ax["fit"]
            if len(self._frame_idx):
                self.surface.do_3d_projection()
                ax3.draw_artist(self.surface)
            ax3.draw_artist(self.wire)
        else:
            self.ax["fit"].draw_artist(self.pred_line)
        if self.fit_note.get_text():
            self.ax["fit"].draw_artist(self.fit_note)
        for s in self.series:
            self.ax[s.ax_name].draw_artist(s.line)
        for name, line in zip(("loss", "sharp", "proj"), self.now_lines):
            self.ax[name].draw_artist(line)
        self.fig.draw_artist(self.title)
        if self.live:
            self.canvas.blit(self.fig.bbox)

    def _set_prediction(self, pred: np.ndarray) -> None:
        lo, hi = self._limits["fit_y"]
        if self.dim == 2:
            z = np.clip(np.nan_to_num(pred, nan=lo, posinf=hi, neginf=lo), lo, hi)  # the floor: a 'hole'
            self._verts[..., 2] = z[self._quad_index]
            self.surface.set_verts(self._verts)
            self.surface.set_array(self._verts[..., 2].mean(axis=1))
        else:
            clip_lo, clip_hi = self._limits["fit_clip"]
            y = np.asarray(pred, dtype=np.float64)[self._fit_order]
            y = np.where(np.isfinite(y), np.clip(y, clip_lo, clip_hi), np.nan)
            self.pred_line.set_data(self._fit_x, y)
        bad = int(np.count_nonzero(~np.isfinite(pred)))
        note = f"prediction not finite at {bad / len(pred):.0%} of the points" if bad else ""
        self.fit_note.set_text(note)

    def _title_text(self, step: float, pred_step: float) -> str:
        """The moving part of the header: the step (short text: it is drawn every frame)."""
        total = self.meta.get("steps")
        text = f"step {int(step):,}" if math.isfinite(step) else "step –"
        if isinstance(total, (int, float)) and total > 0:
            text += f" / {int(total):,}"
        if math.isfinite(pred_step) and math.isfinite(step) and int(pred_step) != int(step):
            text += f"  (fit at {int(pred_step):,})"
        return text

    def _header_text(self) -> str:
        """The static part of the header: run name and lr."""
        parts = []
        name = self.meta.get("name")
        if name:
            parts.append(str(name))
        lr = self.meta.get("lr")
        if isinstance(lr, (int, float)):
            parts.append(f"lr = {lr:g}")
        return "   ·   ".join(parts)

    def rgba(self) -> np.ndarray:
        """The canvas pixels, (height, width, 4) uint8 (a view: copy it to keep a frame)."""
        return np.asarray(self.canvas.buffer_rgba())

    def frames(self) -> Iterator[np.ndarray]:
        """Draw every frame in order, yielding the canvas pixels after each."""
        for i in range(self.n_frames):
            self.update(i)
            yield self.rgba()


# ----------------------------------------------------------------------------- writers


def _ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def write_mp4(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: int) -> int:
    """Encode RGBA frames to an H.264 MP4 through imageio-ffmpeg's pipe; returns the frame
    count. ``render`` catches any Exception from here and falls back to a GIF (tests force
    that path by monkeypatching this function)."""
    import imageio_ffmpeg

    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError("no frames to write")
    h, w = first.shape[:2]
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), pix_fmt_in="rgba", fps=fps, codec="libx264", quality=None,
        macro_block_size=2, ffmpeg_log_level="error",
        output_params=["-preset", "veryfast", "-crf", "23", "-movflags", "+faststart"],
    )
    writer.send(None)
    n = 0
    try:
        writer.send(np.ascontiguousarray(first))
        n = 1
        for frame in it:
            writer.send(np.ascontiguousarray(frame))
            n += 1
    finally:
        writer.close()
    return n


def _run_ffmpeg(args: list[str], frames: Iterable[np.ndarray], size: tuple[int, int], fps: int) -> int:
    """Pipe raw RGBA frames into ``ffmpeg -f rawvideo ... -i - ARGS``; returns the frame count."""
    w, h = size
    cmd = [_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgba",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", *args]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        n = 0
        try:
            for frame in frames:
                proc.stdin.write(np.ascontiguousarray(frame).tobytes())
                n += 1
        except BrokenPipeError:
            pass
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
            code = proc.wait()
        if code != 0:
            err.seek(0)
            raise RuntimeError(f"ffmpeg exited with {code}: {err.read().decode(errors='replace').strip()[-400:]}")
    return n


def write_gif(path: str | os.PathLike, dashboard: Dashboard, fps: int) -> int:
    """A GIF by ffmpeg's palette method: a palette from a few evenly spaced frames
    (palettegen), then every frame mapped onto it (paletteuse). Returns the frame count."""
    n = dashboard.n_frames
    probe = sorted(set(np.round(np.linspace(0, n - 1, min(n, 8))).astype(int).tolist()))

    def sample() -> Iterator[np.ndarray]:
        for i in probe:
            dashboard.update(i)
            yield dashboard.rgba()

    dashboard.update(0)
    h, w = dashboard.rgba().shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        palette = Path(tmp) / "palette.png"
        _run_ffmpeg(["-vf", "palettegen=max_colors=256:reserve_transparent=0:stats_mode=full", "-frames:v", "1", "-update", "1", str(palette)],
                    sample(), (w, h), fps)
        return _run_ffmpeg(["-i", str(palette), "-lavfi", "[0:v][1:v]paletteuse=dither=bayer:bayer_scale=5:diff_mode=rectangle",
                            "-loop", "0", str(path)], dashboard.frames(), (w, h), fps)


def write_gif_pillow(path: str | os.PathLike, dashboard: Dashboard, fps: int) -> int:
    """The last resort GIF writer (slow, large files): Pillow, one palette from the last frame."""
    from PIL import Image

    dashboard.update(dashboard.n_frames - 1)
    palette = Image.fromarray(dashboard.rgba()[..., :3].copy()).quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    images = [Image.fromarray(f[..., :3].copy()).quantize(palette=palette, dither=Image.Dither.NONE) for f in dashboard.frames()]
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(20, int(round(1000 / fps))), loop=0, optimize=False)
    return len(images)


def _save_png(rgba: np.ndarray, path: Path, dpi: float) -> None:
    from PIL import Image

    tmp = path.with_name(path.stem + ".partial.png")
    Image.fromarray(rgba[..., :3].copy()).save(tmp, dpi=(dpi, dpi), compress_level=6)
    os.replace(tmp, path)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


# ----------------------------------------------------------------------------- render


def render(run_dir: str | os.PathLike, viz: Any = None) -> RenderResult:
    """Draw ``dashboard.png`` (always) and ``animation.mp4`` (``animation.gif`` when no MP4
    can be written, nothing when ``viz.format=none``) from the run's files. ``viz``: a
    VizConfig, a mapping with its keys, or None for the run's own ``.hydra/config.yaml``."""
    started = time.perf_counter()
    run_dir = Path(run_dir)
    history = load(run_dir)
    viz = resolve_viz(viz, run_dir)
    dash = Dashboard(history, viz)

    dash.update(dash.n_frames - 1)
    png = run_dir / DASHBOARD_PNG
    _save_png(dash.rgba(), png, viz.dpi)

    fmt = VideoFormat(viz.format)
    video: Optional[Path] = None
    frames = 0
    if fmt is VideoFormat.mp4:
        target = run_dir / ANIMATION_MP4
        partial = run_dir / "animation.partial.mp4"
        try:
            frames = write_mp4(partial, dash.frames(), viz.fps)
            os.replace(partial, target)
            video = target
        except Exception as e:  # no encoder, broken binary, disk full ...: a GIF still shows the run
            _remove(partial)
            log.warning("could not write %s (%s: %s); writing %s instead", target.name, type(e).__name__, _first_line(e), ANIMATION_GIF)
            fmt = VideoFormat.gif
    if fmt is VideoFormat.gif:
        target = run_dir / ANIMATION_GIF
        partial = run_dir / "animation.partial.gif"
        for writer in (write_gif, write_gif_pillow):
            try:
                frames = writer(partial, dash, viz.fps)
                os.replace(partial, target)
                video = target
                break
            except Exception as e:
                _remove(partial)
                log.warning("%s failed (%s: %s)", writer.__name__, type(e).__name__, _first_line(e))
        if video is None:
            log.error("no animation written for %s; %s is there", run_dir, png.name)
    for stale in (run_dir / ANIMATION_MP4, run_dir / ANIMATION_GIF) if video is not None else ():
        if stale != video and stale.exists():  # a new video replaces one of the other format
            _remove(stale)
            log.info("removed %s from an earlier render", stale)
    return RenderResult(png=png, video=video, frames=frames if video else 0, seconds=time.perf_counter() - started)


# ----------------------------------------------------------------------------- live view


def live_view_available() -> tuple[bool, str]:
    """Whether a live window can be shown: a display, and an interactive matplotlib backend
    that opens a figure. The string says which backend, or why not."""
    if sys.platform.startswith("linux") or "bsd" in sys.platform:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return False, "neither DISPLAY nor WAYLAND_DISPLAY is set"
    from matplotlib.backends import BackendFilter, backend_registry

    interactive = set(backend_registry.list_builtin(BackendFilter.INTERACTIVE)) - {"webagg", "nbagg", "notebook"}
    requested = os.environ.get("MPLBACKEND", "").strip().lower()
    if requested and requested not in interactive:
        return False, f"MPLBACKEND={requested} is not an interactive backend"
    import matplotlib.pyplot as plt

    current = (mpl.get_backend(auto_select=False) or "").lower()
    candidates = [current] if current in interactive else []
    usual = ("macosx", "qtagg", "tkagg") if sys.platform == "darwin" else ("qtagg", "tkagg", "gtk4agg", "gtk3agg", "wxagg")
    candidates += [b for b in usual if b not in candidates]
    previous = mpl.get_backend(auto_select=False)
    tried = []
    for name in candidates:
        try:
            plt.switch_backend(name)
            fig = plt.figure()
            plt.close(fig)
            return True, f"matplotlib backend {name}"
        except Exception as e:
            why = _first_line(e)
            tried.append(f"{name}: {why if len(why) <= 60 else why[:57] + '...'}")
    try:
        plt.switch_backend(previous or "agg")
    except Exception:
        plt.switch_backend("agg")
    return False, "no interactive matplotlib backend opens a window (" + "; ".join(tried) + ")"


class LiveDashboard:
    """The dashboard in a window, redrawn whenever the trainer hands over the history so far.
    ``meta`` fills what a live History lacks (``lr`` for the 2/lr line, ``steps``, ``name``).
    Closing the window just stops the updates; training goes on."""

    def __init__(self, viz: Any = None, *, meta: Optional[dict] = None):
        self.viz = resolve_viz(viz) if not isinstance(viz, VizConfig) else viz
        self.meta = dict(meta or {})
        self._dash: Optional[Dashboard] = None
        self._closed = False

    def update(self, history: History) -> None:
        if self._closed:
            return
        import matplotlib.pyplot as plt

        try:
            if self._dash is None:
                dpi = float(self.viz.dpi)
                fig = plt.figure(figsize=tuple(self.viz.size), dpi=dpi, facecolor="white")
                self._dash = Dashboard(history, self.viz, figure=fig, live=True, meta=self.meta)
                fig.canvas.mpl_connect("close_event", lambda event: self._mark_closed())
                fig.canvas.mpl_connect("resize_event", lambda event: self._dash.invalidate())
                plt.show(block=False)
            else:
                self._dash.set_history(history)
            self._dash.update(self._dash.n_frames - 1)
            self._dash.canvas.flush_events()
        except Exception as e:  # a broken window must never stop training
            log.warning("live view stopped (%s: %s)", type(e).__name__, _first_line(e))
            self.close()

    def _mark_closed(self) -> None:
        self._closed = True

    @property
    def figure(self) -> Optional[Figure]:
        return self._dash.fig if self._dash is not None else None

    def close(self) -> None:
        self._closed = True
        if self._dash is not None:
            import matplotlib.pyplot as plt

            plt.close(self._dash.fig)


# ----------------------------------------------------------------------------- command line


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``neuroscope-render RUN_DIR [viz.KEY=VALUE ...]``: re-render a finished run with other
    viz settings (merged over the run's own). Returns 0; a bad argument exits with 2."""
    parser = argparse.ArgumentParser(
        prog="neuroscope-render",
        description="Re-draw dashboard.png and the animation of a NeuroScope run from its files.",
        epilog="example: neuroscope-render outputs/2025-01-01/12-00-00 viz.format=gif viz.fps=10 viz.frames=60",
    )
    parser.add_argument("run_dir", help="a run directory (holds history.npz and summary.json)")
    parser.add_argument("overrides", nargs="*", help="viz settings: viz.format=mp4|gif|none, viz.frames, viz.fps, viz.dpi, viz.size=[w,h]")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        parser.exit(2, f"neuroscope-render: error: run directory {run_dir} does not exist\n")
    try:
        viz = resolve_viz(None, run_dir, args.overrides)
        result = render(run_dir, viz)
    except ConfigError as e:
        parser.exit(2, f"neuroscope-render: error: {e}\n")
    except FileNotFoundError as e:
        parser.exit(2, f"neuroscope-render: error: {e}\n")
    video = f" and {result.video.name} ({result.frames} frames)" if result.video else ""
    print(f"wrote {result.png}{video} in {result.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

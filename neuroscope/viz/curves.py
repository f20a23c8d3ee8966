"""The dashboard's curve panels: metric columns against the step (loss terms and errors,
sharpness against the update rule's edge of stability, the update's projection; the gradient
flow's loss and sharpness dashed beside GD's when the run followed it), growing with the frames."""
from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Hashable, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from ..rundir import History
from . import placement, scales
from .panels import Frame, Look, Panel, RunView, diverged_at
from .style import COLORS, EXTRA_TERM_COLORS, LAMBDA_COLORS, TERM_COLORS

SPARSE_POINTS = 40  # curves with this few points get a dot at each
FLOW_DASHES = (0, (7, 3))  # the gradient-flow reference: GD's colour, dashed
NOTE_GREY = "#777777"


@dataclass
class Series:
    """One metric column drawn as a line that grows with the frames."""

    column: str
    line: Line2D
    x: np.ndarray = field(default_factory=lambda: np.empty(0))
    y: np.ndarray = field(default_factory=lambda: np.empty(0))


class CurvePanel(Panel):
    """Metric columns against the step, each up to the frame's step, with a dotted line at
    it; limits over the whole run. A note replaces the curves when none has a point."""

    title: ClassVar[str]
    ylabel: ClassVar[str]
    log_y: ClassVar[bool] = False
    legend: ClassVar[bool] = True
    empty_note: ClassVar[Optional[str]] = None

    def __init__(self, fig: Figure, rect: Sequence[float], history: History, meta: dict, look: Look):
        super().__init__(fig, rect, history, meta, look)
        self.series: list[Series] = []
        self._add_curves(history, meta)
        self.now_line = self.ax.axvline(0, color=COLORS["now"], lw=0.9, ls=":", alpha=0.8, animated=True, zorder=1)
        self.animated = [s.line for s in self.series] + [self.now_line]
        ax = self.ax
        if self.log_y:
            ax.set_yscale("log")
        ax.set_title(self.title, loc="left", y=1.0)  # y given: no layout pass to lift it over top tick labels (there are none)
        ax.set_ylabel(self.ylabel)
        ax.set_xlabel("step")
        ax.grid(True, which="major", lw=0.5, alpha=0.35)
        self.limits: Optional[tuple[scales.Limits, scales.Limits]] = None
        self.diverged, self.diverged_step = False, None

    @abstractmethod
    def _add_curves(self, history: History, meta: dict) -> None:
        """Add a series (``_add``) for each column of ``history`` the panel shows."""

    def _add(self, column: str, label: str, color: str, lw: float, ls: Any = "-", z: float = 3) -> None:
        (line,) = self.ax.plot([], [], color=color, lw=lw, ls=ls, label=label, animated=True, zorder=z)
        self.series.append(Series(column, line))

    def _y_limits(self) -> scales.Limits:
        return scales.log_limits([s.y for s in self.series])

    def set_history(self, view: RunView) -> Hashable:
        steps, m = view.steps, view.history.metrics
        for s in self.series:
            col = np.asarray(m.get(s.column, np.full(len(steps), np.nan)), dtype=np.float64)
            s.x, s.y = scales.finite_series(steps[: len(col)], col[: len(steps)], positive=self.log_y)
        limits = (view.time_x, self._y_limits())
        if limits != self.limits:
            self.limits = limits
            self.ax.set_xlim(*limits[0])
            self.ax.set_ylim(*limits[1])
        self.diverged, self.diverged_step = diverged_at(view.meta)
        return limits, tuple(len(s.y) > 0 for s in self.series), self.diverged, self.diverged_step

    def _legend_handles(self) -> list[Any]:
        return [s.line for s in self.series if self.look.live or len(s.y)]

    def _notes(self) -> list[Any]:
        """Panel-specific static notes."""
        return []

    def _labels(self) -> list[tuple[Any, list[dict]]]:
        """Labels that go where the curves are not: each text with its candidate spots (Text
        properties: x, y, ha, va)."""
        return []

    def _place(self, renderer: Any, notes: list[Any], labels: list[tuple[Any, list[dict]]], legend: Any,
               lines: Sequence[Line2D] = (), tries: int = 3) -> None:
        """Labels, then the legend, each where it covers no curve and nothing placed before; where
        the legend finds no such place, raise the top of the value axis (a quarter, or a decade on
        a log axis) and try again."""
        for attempt in range(tries):
            points = placement.data_points([s.line for s in self.series] + list(lines))
            avoid = [n.get_window_extent(renderer) for n in notes]
            for text, spots in labels:
                avoid.append(placement.place_text(text, renderer, spots, points, avoid))
            if legend is None or placement.place_legend(legend, renderer, points, avoid)[0] == 0 or attempt == tries - 1:
                return
            lo, hi = self.ax.get_ylim()
            self.ax.set_ylim(lo, hi * 10 if self.log_y else hi + 0.25 * (hi - lo))

    def _backdrop(self) -> list[Any]:
        """Static artists under the curves; those with a label get a legend entry."""
        return []

    def _note(self, x: float, y: float, text: str, **style: Any) -> Any:
        return self.ax.text(x, y, text, transform=self.ax.transAxes, **style)

    def decorate(self) -> list[Any]:
        for s in self.series:  # legend and label placement look at the whole run's curves
            s.line.set_data(s.x, s.y)
            # few measurements (a short or early-diverged run): dots, so a single one still shows
            s.line.set_marker("o" if len(s.x) <= SPARSE_POINTS else "None")
            s.line.set_markevery(None)
            s.line.set_markersize(3.0 * max(self.look.scale, 0.6))
        notes: list[Any] = []
        if self.empty_note and not self.look.live and not any(len(s.y) for s in self.series):
            notes.append(self._note(0.5, 0.5, self.empty_note, ha="center", va="center", fontsize=self.look.font_size * 0.95,
                                    color=NOTE_GREY, zorder=6))
        notes += self._notes()
        labels = self._labels()
        backdrop = self._backdrop()
        out = backdrop + notes + [text for text, _ in labels]
        labelled = [a for a in backdrop if not a.get_label().startswith("_")]
        handles = (self._legend_handles() if self.legend or labelled else []) + labelled
        legend = None
        if handles:
            legend = self.ax.legend(handles=handles, labels=[h.get_label() for h in handles], loc="best", framealpha=0.85,
                                    ncol=1, handlelength=1.8, borderaxespad=0.4)
            legend.set_zorder(6)
            out.append(legend)
        renderer = placement.renderer_of(self.fig)
        if renderer is not None:
            self._place(renderer, notes, labels, legend, [a for a in backdrop if isinstance(a, Line2D)])
        if self.diverged_step is not None:
            out.append(self.ax.axvline(self.diverged_step, color=COLORS["diverged"], lw=1.2, ls="--", alpha=0.8, zorder=1))
        return out

    def show(self, frame: Frame) -> None:
        whole = math.isinf(frame.cut)
        for s in self.series:
            k = int(np.searchsorted(s.x, frame.cut, side="right"))
            s.line.set_data(s.x[:k], s.y[:k])
            if len(s.x) > SPARSE_POINTS:  # a dot at the newest value: one point still shows (frame 0)
                s.line.set_marker("None" if whole or k == 0 else "o")
                s.line.set_markevery([k - 1] if k else None)
        self.now_line.set_xdata([frame.now, frame.now])


class LossPanel(CurvePanel):
    """The objective, each of its terms, and the errors in and outside the training box."""

    name = "loss"
    title = "Loss terms and errors"
    ylabel = "value (log)"
    log_y = True

    def _add_curves(self, history: History, meta: dict) -> None:
        m = history.metrics
        if "loss" in m:
            self._add("loss", "training loss", COLORS["loss"], 1.9, z=4)
        extra = iter(EXTRA_TERM_COLORS)
        for c in history.loss_terms:
            label = c[len("loss_"):].replace("_", " ") + " term"
            self._add(c, label, TERM_COLORS.get(c) or next(extra, "#999999"), 1.1, "--")
        if "test_error" in m:
            self._add("test_error", "test error (in the training box)", COLORS["test_error"], 1.5)
        if "gen_error" in m:
            self._add("gen_error", "generalization error (outside it)", COLORS["gen_error"], 1.5)
        if "flow_loss" in m:
            self._add("flow_loss", "gradient flow: training loss", COLORS["loss"], 1.5, FLOW_DASHES, z=4)
            self._add("distance_to_flow", "‖θ − θ_flow‖", COLORS["distance_to_flow"], 1.2)

    def _notes(self) -> list[Any]:
        out, fs = [], self.look.font_size
        if not self.look.live and any(s.column == "gen_error" and not len(s.y) for s in self.series):
            out.append(self._note(0.02, 0.03, "generalization error: not measured (test box = training box?)",
                                  ha="left", va="bottom", fontsize=fs * 0.8, color=NOTE_GREY))
        if self.diverged:
            at = self.diverged_step
            out.append(self._note(0.02, 0.97, f"diverged at step {int(at):,}" if at is not None else "diverged", ha="left",
                                  va="top", color=COLORS["diverged"], fontsize=fs, fontweight="bold", zorder=6))
        return out


class SharpnessPanel(CurvePanel):
    """The top Hessian eigenvalues against the update rule's edge of stability (2/lr for GD,
    summary.json's ``edge`` and ``edge_label``), and the gradient flow's sharpness if followed."""

    name = "sharp"
    title = "Sharpness (top Hessian eigenvalue) vs the edge of stability"
    ylabel = "eigenvalue"
    empty_note = "sharpness not measured (curvature.every=0)"

    def _add_curves(self, history: History, meta: dict) -> None:
        for i, c in enumerate(history.eigenvalue_columns):
            if c not in history.metrics:
                continue
            if c == "sharpness":
                self._add(c, "sharpness λ₁", COLORS["sharpness"], 1.8, z=4)
            else:
                sub = "".join("₀₁₂₃₄₅₆₇₈₉"[int(d)] for d in c.split("_")[1])
                self._add(c, f"λ{sub}", LAMBDA_COLORS[(i - 1) % len(LAMBDA_COLORS)], 1.1)
        self._add_spectrum_curves(history)
        if "flow_sharpness" in history.metrics:
            self._add("flow_sharpness", "gradient flow: λ₁", COLORS["sharpness"], 1.5, FLOW_DASHES, z=4)
        self.threshold, self.edge_label = edge_of(meta)
        self.eos_line = None
        if self.threshold is not None:
            self.eos_line = self.ax.axhline(self.threshold, color=COLORS["eos"], lw=1.6, ls="--",
                                            label=f"{self.edge_label} = {self.threshold:.4g}", zorder=2)
        self.off_scale: Optional[float] = None

    def _add_spectrum_curves(self, history: History) -> None:
        """Each term's sharpness, the Gauss-Newton sharpness and λ_min, when the run measured them."""
        extra = iter(EXTRA_TERM_COLORS)
        for c in history.metrics:
            part = c[len("sharpness_"):] if c.startswith("sharpness_") else None
            if part == "ggn":
                self._add(c, "λ_max of the Gauss-Newton matrix", COLORS["sharpness"], 1.1, ":")
            elif part is not None and f"loss_{part}" in history.metrics:
                self._add(c, f"λ_max of the {part} term", TERM_COLORS.get(f"loss_{part}") or next(extra, "#999999"), 1.1, "--")
        if "lambda_min" in history.metrics:
            self._add("lambda_min", "λ_min", COLORS["gen_error"], 1.1)

    def _y_limits(self) -> scales.Limits:
        limits, self.off_scale = scales.eigenvalue_limits([s.y for s in self.series], self.threshold)
        return limits

    def set_history(self, view: RunView) -> Hashable:
        threshold, label = edge_of(view.meta)
        if self.eos_line is not None and threshold is not None and (threshold, label) != (self.threshold, self.edge_label):
            self.threshold, self.edge_label = threshold, label  # another run's edge (Dashboard.show_run)
            self.eos_line.set_ydata([threshold, threshold])
            self.eos_line.set_label(f"{label} = {threshold:.4g}")
        state = super().set_history(view)
        return state, (self.threshold, self.edge_label), None if self.off_scale is None else f"{self.off_scale:.3g}"

    def _legend_handles(self) -> list[Any]:
        return super()._legend_handles() + ([self.eos_line] if self.eos_line is not None else [])

    def _notes(self) -> list[Any]:
        if self.off_scale is None:
            return []
        return [self._note(0.99, 0.97, f"↑ off scale (max {self.off_scale:.3g})", ha="right", va="top",
                           fontsize=self.look.font_size * 0.85, color=COLORS["diverged"])]

    def _labels(self) -> list[tuple[Any, list[dict]]]:
        """The edge-of-stability label (2/lr for GD) on its line, at the end (left or right, above or below) the curves leave free."""
        if self.threshold is None:
            return []
        to_data = blended_transform_factory(self.ax.transAxes, self.ax.transData)
        label = self.ax.text(0.01, self.threshold, f" {self.edge_label} = {self.threshold:.4g} ", transform=to_data, ha="left",
                             va="bottom", color=COLORS["eos"], fontsize=self.look.font_size * 0.9, fontweight="bold",
                             zorder=5)
        spots = [dict(x=x, ha=ha, va=va) for va in ("bottom", "top") for x, ha in ((0.01, "left"), (0.99, "right"),
                                                                                   (0.5, "center"))]
        return [(label, spots)]


def edge_of(meta: dict) -> tuple[Optional[float], str]:
    """The edge of stability and its name from a run's summary: its ``edge`` (an update rule's
    threshold), else 2/lr from its ``lr`` (runs made before momentum); None without either."""
    edge, lr = meta.get("edge"), meta.get("lr")
    if isinstance(edge, (int, float)) and edge > 0:
        return float(edge), str(meta.get("edge_label", "edge"))
    if isinstance(lr, (int, float)) and lr > 0:
        return 2.0 / float(lr), "2/lr"
    return None, "2/lr"


class ProjectionPanel(CurvePanel):
    """|Δθ·v_max|: how far each update moves along the top eigenvector, over the floors under
    which it is not resolved: the recorded error bound (``projection_err``) and float rounding
    of the update, ε·lr·‖∇L‖ (ε of the run's dtype)."""

    name = "proj"
    title = "|Δθ·v_max|: the update along the top eigenvector"
    ylabel = "|Δθ·v_max| (log)"
    log_y = True
    legend = False  # one curve; the floors, when drawn, get legend entries
    empty_note = "|Δθ·v_max| not measured"

    def _add_curves(self, history: History, meta: dict) -> None:
        if "projection" in history.metrics:
            self._add("projection", "|Δθ·v_max|", COLORS["projection"], 1.3)
        self.floors: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def set_history(self, view: RunView) -> Hashable:
        m = view.history.metrics
        self.floors = projection_floors(m, view.steps, view.meta) if "projection" in m else {}
        state = super().set_history(view)
        return state, tuple((k, len(x)) for k, (x, _) in self.floors.items())

    def _y_limits(self) -> scales.Limits:
        return scales.log_limits([s.y for s in self.series] + [y for _, y in self.floors.values()])

    def _backdrop(self) -> list[Any]:
        """The floors, under the curve: a shaded band up to the error bound, a dotted line at rounding."""
        out: list[Any] = []
        bottom = self.limits[1][0] if self.limits else 1e-300
        if "error bound" in self.floors:
            x, y = self.floors["error bound"]
            out.append(self.ax.fill_between(x, bottom, y, step="mid", color=NOTE_GREY, alpha=0.22, lw=0, zorder=1,
                                            label="not resolved (error bound)"))
        if "float rounding" in self.floors:
            x, y = self.floors["float rounding"]
            out += self.ax.plot(x, y, color=NOTE_GREY, lw=1.0, ls=":", zorder=2, label="float rounding ε·lr·‖∇L‖")
        return out


EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}


def projection_floors(metrics: dict, steps: np.ndarray, meta: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The levels under which |Δθ·v_max| is not resolved, as (steps, values) of their finite,
    positive points: "error bound" from a ``projection_err`` column, "float rounding" from
    ``grad_norm``, lr and the run's dtype (summary ``environment.dtype``). Absent inputs: absent floors."""
    out = {}
    if "projection_err" in metrics:
        out["error bound"] = scales.finite_series(steps, np.asarray(metrics["projection_err"], dtype=np.float64),
                                                  positive=True)
    lr = meta.get("lr")
    dtype = str((meta.get("environment") or {}).get("dtype", meta.get("dtype", "")))
    if "grad_norm" in metrics and isinstance(lr, (int, float)) and dtype in EPS:
        rounding = EPS[dtype] * float(lr) * np.asarray(metrics["grad_norm"], dtype=np.float64)
        out["float rounding"] = scales.finite_series(steps, rounding, positive=True)
    return {k: v for k, v in out.items() if len(v[0])}

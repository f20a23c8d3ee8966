"""The picture test: dashboards (1D, 2D, a PDE run, a diverged run) and sweep figures (a grid
over lr and 3 seeds, an Optuna-like sweep with chosen lr values and several diverged jobs)
are drawn, and every text matplotlib drew is measured (its window extent with the renderer):
no text overlaps another text or a legend, no legend overlaps another, and no legend covers
a data curve."""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.legend import Legend
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from neuroscope import rundir as hist
from neuroscope import sweep as sw
from neuroscope import viz

from .test_plotting import synthetic_history, write_run
from .test_sweep import _write_job, _write_multirun

OPTUNA_LRS = [0.0123456, 0.0134567, 0.0456789, 0.0501234, 0.123457, 0.134568, 0.87654, 0.91234, 0.95678]
SLACK = 1.0  # pixels two boxes may share (antialiased edges)


class DrawnTexts:
    """Records every Text that draws itself (tick labels, titles, notes, legend entries)."""

    def __init__(self, monkeypatch):
        self.texts: list[Text] = []
        original = Text.draw

        def draw(text, renderer):
            original(text, renderer)
            if text.get_visible() and text.get_text().strip() and text not in self.texts:
                self.texts.append(text)

        monkeypatch.setattr(Text, "draw", draw)


def _overlap(a: Bbox, b: Bbox) -> bool:
    return min(a.x1, b.x1) - max(a.x0, b.x0) > SLACK and min(a.y1, b.y1) - max(a.y0, b.y0) > SLACK


def _legends(fig) -> list[Legend]:
    unique = {id(leg): leg for leg in fig.findobj(Legend) if leg.get_visible()}
    return list(unique.values())


def assert_readable(fig, drawn: DrawnTexts) -> None:
    """No drawn text overlaps another drawn text or a legend; legends do not overlap; a
    legend covers no point of a data curve (a line of more than two points) of its axes."""
    renderer = fig.canvas.get_renderer()
    legends = _legends(fig)
    inside = {id(t) for leg in legends for t in [*leg.get_texts(), leg.get_title()]}
    texts = [(t.get_text(), t.get_window_extent(renderer)) for t in drawn.texts if id(t) not in inside]
    boxes = [(f"legend {[t.get_text() for t in leg.get_texts()][:2]}", leg.get_window_extent(renderer)) for leg in legends]
    problems = [f"{a!r} overlaps {b!r}" for (a, ba), (b, bb) in itertools.combinations(texts + boxes, 2) if _overlap(ba, bb)]
    page = fig.bbox
    problems += [f"{name!r} reaches outside the figure" for name, box in texts + boxes
                 if box.x0 < page.x0 - SLACK or box.y0 < page.y0 - SLACK or box.x1 > page.x1 + SLACK or box.y1 > page.y1 + SLACK]
    notes = [(repr(t.get_text()), t.axes, t.get_window_extent(renderer)) for t in drawn.texts
             if t.axes is not None and t in t.axes.texts]
    covering = [(f"legend {[t.get_text() for t in leg.get_texts()][:2]}", leg.axes, leg.get_window_extent(renderer))
                for leg in legends]
    for name, ax, box in notes + covering:
        for line in (ax.lines if ax is not None and ax.name != "3d" else []):
            hit = _points_inside(line, box)
            if hit:
                problems.append(f"{name} covers {hit} points of {line.get_label()!r}")
    assert not problems, "\n".join(problems)


def _points_inside(line, box: Bbox) -> int:
    """How many points of a data curve (more than two points: not a reference line) lie in ``box``."""
    xy = line.get_xydata()
    if len(xy) <= 2 or not line.get_visible():
        return 0
    pts = line.get_transform().transform(xy[np.all(np.isfinite(xy), axis=1)])
    return int(np.count_nonzero((pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) & (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1)))


# ----------------------------------------------------------------------------- dashboards


def _pde_history(*, time_dependent: bool = False) -> hist.History:
    """A 1D Poisson-like run (no training points; pde and bc terms), or with ``time_dependent``
    a heat-like run over (x, t)."""
    h = synthetic_history(dim=2 if time_dependent else 1, plot_n=400 if time_dependent else 200)
    n = len(h.metrics["step"])
    h.metrics.pop("loss_l2")
    h.metrics["loss_pde"] = np.geomspace(5.0, 1e-3, n)
    h.metrics["loss_bc"] = np.geomspace(0.1, 1e-7, n)
    h.metrics.pop("loss_data")
    g = h.geometry
    g.train_x, g.train_y = g.train_x[:0], g.train_y[:0]
    lo, hi = g.train_box
    d = g.input_dim
    g.collocation_x = np.random.default_rng(1).uniform(lo, hi, size=(64, d))
    g.boundary_x = np.array([[lo] * d, [hi] * d])
    if time_dependent:
        g.axis_names = ("x", "t")
    return h


def _diverged_history() -> hist.History:
    """lr=5 as it happens: the prediction explodes to ±9e6 in the last frame, partly to inf."""
    h = synthetic_history(diverge_at=250)
    h.frame_pred[-1] = np.where(h.geometry.plot_x[:, 0] > 0, 9e6, -9e6)
    h.frame_pred[-1, ::5] = np.inf
    return h


DASHBOARDS = {
    "1d_k3": lambda: synthetic_history(k=3),
    "2d_k3": lambda: synthetic_history(dim=2, plot_n=400, k=3),
    "poisson1d": _pde_history,
    "heat_xt": lambda: _pde_history(time_dependent=True),
    "diverged": _diverged_history,
}


@pytest.mark.parametrize("size", [(12.0, 9.0), (8.0, 6.0)])
@pytest.mark.parametrize("case", list(DASHBOARDS))
def test_dashboard_texts_and_legends_never_overlap(tmp_path, monkeypatch, case, size):
    history = DASHBOARDS[case]()
    run = write_run(tmp_path / case, history, diverge_at=250 if case == "diverged" else None)
    dash = viz.Dashboard(hist.load(run), viz.resolve_viz({"size": list(size), "dpi": 100, "format": "none"}))
    drawn = DrawnTexts(monkeypatch)
    dash.update(dash.n_frames - 1)
    assert_readable(dash.fig, drawn)


# ----------------------------------------------------------------------------- sweeps


def _grid_with_seeds(root: Path) -> Path:
    _write_multirun(root, ["lr=0.05,0.1,0.2", "seed=0,1,2"])
    for num, (lr, seed) in enumerate(itertools.product((0.05, 0.1, 0.2), (0, 1, 2))):
        _write_job(root, f"{num}_lr={lr},seed={seed}", [f"lr={lr}", f"seed={seed}"], lr=lr, status="finished",
                   sharp=1.5 / lr, loss_end=0.01 * (1 + seed) * lr)
    return root


def _optuna_like(root: Path) -> Path:
    """Chosen, non-round lr values, close together, the largest three diverged."""
    (root).mkdir(parents=True)
    (root / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    _target_: hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper\n"
        "    params:\n      lr: interval(0.01, 1.0)\n  overrides:\n    task: []\nlr: 0.1\n")
    for num, lr in enumerate(OPTUNA_LRS):
        status = "diverged" if lr > 0.8 else "finished"
        _write_job(root, str(num), [f"lr={lr}"], lr=lr, status=status, sharp=1.9 / lr, loss_end=0.02 * math.sqrt(lr))
    return root


def _lr_grid_64(root: Path) -> Path:
    """A 64-value lr grid (a batched sweep's size), two jobs diverged, one interrupted."""
    lrs = [round(0.02 + 0.18 * i / 63, 5) for i in range(64)]
    _write_multirun(root, ["lr=" + ",".join(map(str, lrs))])
    for num, lr in enumerate(lrs):
        status = "diverged" if num in (40, 63) else "interrupted" if num == 7 else "finished"
        _write_job(root, f"{num}_lr={lr}", [f"lr={lr}"], lr=lr, status=status, sharp=1.5 / lr, loss_end=0.01 * lr)
    return root


SWEEPS = {"grid_lr_x_3_seeds": _grid_with_seeds, "optuna_like_lr": _optuna_like, "lr_grid_64": _lr_grid_64}


@pytest.mark.parametrize("case", list(SWEEPS))
def test_sweep_figure_texts_and_legends_never_overlap(tmp_path, monkeypatch, case):
    sweep = sw.load_sweep(SWEEPS[case](tmp_path / case))
    fig = sw.draw_sweep(sweep)
    drawn = DrawnTexts(monkeypatch)
    fig.canvas.draw()
    assert_readable(fig, drawn)

"""Where a panel's legend and labels go: the candidate spot that covers no other text and the
fewest data points, measured with the renderer (matplotlib's ``loc="best"`` weighs a covered
text like one covered point, so it puts legends over notes)."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
from matplotlib.transforms import Bbox

TEXT_COST = 10_000  # covering a text is worse than covering any number of points
LEGEND_CODES = ("upper right", "upper left", "lower left", "lower right", "center right", "center left",
                "upper center", "lower center", "center")


def renderer_of(fig: Any) -> Optional[Any]:
    """The figure canvas's renderer, or None for a canvas that has none to lend (then the
    callers fall back to matplotlib's own placement)."""
    get = getattr(fig.canvas, "get_renderer", None)
    try:
        return get() if get is not None else None
    except Exception:
        return None


def data_points(lines: Iterable[Any], spacing: float = 4.0) -> np.ndarray:
    """The display coordinates of ``lines`` (their current data, finite points), (n, 2); a line
    drawn through its points also gets points every ``spacing`` pixels along each segment, so a
    legend over a steep segment counts as covering it."""
    chunks = []
    for line in lines:
        xy = np.asarray(line.get_xydata(), dtype=np.float64)
        if xy.ndim != 2 or not len(xy):
            continue
        xy = xy[np.all(np.isfinite(xy), axis=1)]
        if not len(xy):
            continue
        pts = line.get_transform().transform(xy)
        chunks.append(pts)
        if line.get_linestyle() not in ("None", "none", "", " ") and len(pts) > 1:
            seg = np.diff(pts, axis=0)
            n = np.minimum(np.ceil(np.hypot(seg[:, 0], seg[:, 1]) / spacing).astype(int), 200)
            long = np.nonzero(n > 1)[0]
            for i in long:
                f = np.linspace(0, 1, n[i] + 1)[1:-1, None]
                chunks.append(pts[i] + f * seg[i])
    return np.concatenate(chunks) if chunks else np.empty((0, 2))


def cost(box: Bbox, points: np.ndarray, avoid: Sequence[Bbox]) -> float:
    """How bad a spot is: TEXT_COST per box of ``avoid`` it overlaps plus the points it covers."""
    inside = (points[:, 0] > box.x0) & (points[:, 0] < box.x1) & (points[:, 1] > box.y0) & (points[:, 1] < box.y1)
    hits = sum(1 for b in avoid if min(box.x1, b.x1) > max(box.x0, b.x0) and min(box.y1, b.y1) > max(box.y0, b.y0))
    return TEXT_COST * hits + float(np.count_nonzero(inside))


def _least_cost(artist: Any, renderer: Any, candidates: Sequence[Any], apply: Callable[[Any], None],
                points: np.ndarray, avoid: Sequence[Bbox]) -> tuple[float, Bbox]:
    """Try each candidate (``apply`` it to ``artist``), keep the one of least ``cost`` (the first
    free one); returns its cost and the artist's box there."""
    best: Optional[tuple[float, Any, Bbox]] = None
    for candidate in candidates:
        apply(candidate)
        box = artist.get_window_extent(renderer)
        c = cost(box, points, avoid)
        if best is None or c < best[0]:
            best = (c, candidate, box)
        if c == 0:
            break
    apply(best[1])
    return best[0], best[2]


def place_legend(legend: Any, renderer: Any, points: np.ndarray, avoid: Sequence[Bbox]) -> tuple[float, Bbox]:
    """Move ``legend`` to the candidate location of least ``cost``; returns the cost and its box there."""
    return _least_cost(legend, renderer, LEGEND_CODES, legend.set_loc, points, avoid)


def place_text(text: Any, renderer: Any, spots: Sequence[dict], points: np.ndarray, avoid: Sequence[Bbox]) -> Bbox:
    """Give ``text`` the properties of the spot (a dict of Text setters: x, ha, va) of least
    ``cost``; returns its box there."""
    return _least_cost(text, renderer, spots, text.update, points, avoid)[1]

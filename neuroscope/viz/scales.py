"""Axis limits and curve decimation for the dashboard: plain functions of arrays, so every
limit a panel shows can be tested without a figure."""
from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

import numpy as np

MAX_LINE_POINTS = 2400  # per curve; longer runs are min/max-decimated (spikes survive)

_NICE = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)

Limits = tuple[float, float]


def finite_series(x: np.ndarray, y: np.ndarray, *, positive: bool = False) -> tuple[np.ndarray, np.ndarray]:
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


def nice_ceil(v: float) -> float:
    """The smallest 'round' number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k) >= v."""
    if not v > 0 or not math.isfinite(v):
        return 1.0
    e = math.floor(math.log10(v))
    m = v / 10**e
    for n in _NICE:
        if m <= n * (1 + 1e-9):
            return n * 10**e
    return 10.0 ** (e + 1)


def linear_limits(lo: float, hi: float, *, pad_lo: float = 0.06, pad_hi: float = 0.06) -> Limits:
    """Limits around [lo, hi] with padding, rounded outward to a 'nice' step (so growing data
    in the live view crosses them rarely)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return (-1.0, 1.0)
    if hi - lo < 1e-12 * max(1.0, abs(hi)):
        lo, hi = lo - 0.5 * max(1.0, abs(lo)), hi + 0.5 * max(1.0, abs(hi))
    span = hi - lo
    lo, hi = lo - pad_lo * span, hi + pad_hi * span
    step = nice_ceil((hi - lo) / 8)
    return (math.floor(lo / step) * step, math.ceil(hi / step) * step)


def log_limits(values: Iterable[np.ndarray]) -> Limits:
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


def time_limits(steps: np.ndarray, planned: object, *, live: bool) -> Limits:
    """The step axis: the recorded steps, or in the live view up to the planned steps (a
    round number when unknown) so that the axis does not move while the run grows; padded so
    a dot on the first or last step stays whole."""
    steps = steps[np.isfinite(steps)]
    x0 = float(steps[0]) if len(steps) else 0.0
    x1 = float(steps[-1]) if len(steps) else 1.0
    if live:
        x1 = float(planned) if isinstance(planned, (int, float)) and planned > x1 else nice_ceil(max(x1, 1.0))
    if x1 <= x0:
        x1 = x0 + 1.0
    pad = 0.012 * (x1 - x0)
    return (x0 - pad, x1 + pad)


def eigenvalue_limits(values: Sequence[np.ndarray], threshold: Optional[float]) -> tuple[Limits, Optional[float]]:
    """The eigenvalue axis and the largest value it leaves off scale (None when all show).

    A few wild eigenvalues (a diverging run) must not squash the 2/lr line: they go off scale
    above max(3 x 2/lr, the 95th percentile); a run that lives far above 2/lr shows whole."""
    vals = np.concatenate(list(values)) if len(values) else np.empty(0)
    data_hi = float(vals.max()) if len(vals) else 0.0
    data_lo = float(vals.min()) if len(vals) else 0.0
    if threshold is not None:
        typical = float(np.percentile(vals, 95)) if len(vals) else 0.0
        top = max(1.25 * threshold, min(1.08 * data_hi, max(3.0 * threshold, 1.08 * typical)))
    else:
        top = 1.08 * data_hi if data_hi > 0 else 1.0
    top = nice_ceil(top)
    bottom = 0.0 if data_lo >= 0 else -min(nice_ceil(-1.1 * data_lo), top)
    return (bottom, top), (data_hi if data_hi > top else None)


def fit_limits(target: np.ndarray, predictions: np.ndarray, *, pad_lo: float, pad_hi: float,
               headroom: Optional[float] = None) -> tuple[Limits, Limits]:
    """The fit's value axis over the target and every shown prediction, and the range the
    predictions are clipped to. An exploding prediction may not squash the target: the data
    range stops 1.5 target spans beyond it. With ``headroom`` the clip ends that fraction of
    the data range above the data (a legend strip above the curves stays clear); without it
    the clip is the axis."""
    target = np.asarray(target, dtype=np.float64)
    t = target[np.isfinite(target)]
    tlo, thi = (float(t.min()), float(t.max())) if len(t) else (-1.0, 1.0)
    span = max(thi - tlo, 1e-9)
    p = predictions[np.isfinite(predictions)]
    lo, hi = tlo, thi
    if len(p):
        lo = min(lo, max(float(p.min()), tlo - 1.5 * span))
        hi = max(hi, min(float(p.max()), thi + 1.5 * span))
    axis = linear_limits(lo, hi, pad_lo=pad_lo, pad_hi=pad_hi)
    clip = axis if headroom is None else (axis[0], hi + headroom * (hi - lo))
    return axis, clip

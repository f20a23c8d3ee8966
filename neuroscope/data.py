"""Every point set a run needs: training points, the in-box test grid, the out-of-box
generalization points, the plot grid, and PDE collocation/boundary points.

The training box is [lo, hi] in every input dimension (``data.train_range``); the test box
(``data.test_range``) contains it, and its part outside the training box measures
generalization. Targets are computed in float64 and cast to the run's dtype.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

from .config import Config, Sampling
from .rundir import Geometry

TargetFn = Callable[[Tensor], Tensor]


@dataclass
class Problem:
    input_dim: int
    train_box: tuple[float, float]
    test_box: tuple[float, float]
    train_x: Tensor  # (N, d)
    train_y: Tensor  # (N,)
    test_x: Tensor  # in-box grid (T, d)
    test_y: Tensor
    gen_x: Tensor  # test-box points outside the training box (G, d); G may be 0
    gen_y: Tensor
    plot_x: Tensor  # (P, d)
    plot_y: Tensor
    plot_shape: tuple[int, ...]  # (P,) in 1D, (g, g) in 2D
    collocation_x: Optional[Tensor] = None  # PDE interior points
    boundary_x: Optional[Tensor] = None  # PDE boundary / initial points
    members: Optional[int] = None  # an ensemble's E: train_x (E, N, d), train_y (E, N), PDE points (E, m, d)


def stack(problems: list[Problem]) -> Problem:
    """The members' problems as one ensemble's: their training (and PDE) points stacked along
    a leading member dimension; the test, generalization and plot grids, which no batchable
    setting changes, shared (the first member's)."""
    first = problems[0]

    def stacked(name: str) -> Optional[Tensor]:
        values = [getattr(p, name) for p in problems]
        return None if values[0] is None else torch.stack(values)

    return replace(first, train_x=stacked("train_x"), train_y=stacked("train_y"), collocation_x=stacked("collocation_x"),
                   boundary_x=stacked("boundary_x"), members=len(problems))


def grid(lo: float, hi: float, n: int, dim: int) -> tuple[Tensor, tuple[int, ...]]:
    """About ``n`` evenly spaced points of [lo, hi]^dim (a g x g 'ij' grid in 2D, g = round(sqrt n))."""
    if dim == 1:
        return torch.linspace(lo, hi, n, dtype=torch.float64)[:, None], (n,)
    g = max(2, round(math.sqrt(n)))
    u = torch.linspace(lo, hi, g, dtype=torch.float64)
    a, b = torch.meshgrid(u, u, indexing="ij")
    return torch.stack([a.reshape(-1), b.reshape(-1)], dim=1), (g, g)


def outside_box(x: Tensor, lo: float, hi: float) -> Tensor:
    """Mask of points with some coordinate strictly outside [lo, hi]."""
    span = hi - lo
    eps = 1e-9 * span
    return ((x < lo - eps) | (x > hi + eps)).any(dim=1)


def make(cfg: Config, target: TargetFn, *, pde=None, device: torch.device, dtype: torch.dtype) -> Problem:
    """Sample every point set of a run from its config; deterministic given ``cfg.seed``."""
    d = cfg.data
    dim = int(cfg.input_dim)
    lo, hi = (float(v) for v in d.train_range)
    tlo, thi = (float(v) for v in d.test_range)
    gen = torch.Generator().manual_seed(int(cfg.seed))

    if d.sampling is Sampling.grid:
        train_x, _ = grid(lo, hi, int(d.n_train), dim)
    else:
        train_x = lo + (hi - lo) * torch.rand(int(d.n_train), dim, generator=gen, dtype=torch.float64)
    train_y = target(train_x)
    if d.noise > 0:
        train_y = train_y + float(d.noise) * torch.randn(train_y.shape, generator=gen, dtype=torch.float64)

    test_x, _ = grid(lo, hi, int(d.n_test), dim)
    # The out-of-box grid has the in-box grid's spacing, over the whole test box.
    per_dim = int(d.n_test) if dim == 1 else round(math.sqrt(int(d.n_test)))
    n_wide = max(2, math.ceil(per_dim * (thi - tlo) / (hi - lo)))
    wide_x, _ = grid(tlo, thi, n_wide if dim == 1 else n_wide**2, dim)
    gen_x = wide_x[outside_box(wide_x, lo, hi)]
    plot_x, plot_shape = grid(tlo, thi, int(d.n_plot), dim)

    collocation_x = boundary_x = None
    if pde is not None:
        sampling = d.sampling.value
        collocation_x = pde.collocation_points(lo, hi, int(cfg.loss.n_collocation), gen, torch.float64, "cpu", sampling=sampling)
        boundary_x = pde.boundary_points(lo, hi, int(cfg.loss.n_boundary), gen, torch.float64, "cpu", sampling=sampling)

    def put(t: Optional[Tensor]) -> Optional[Tensor]:
        return None if t is None else t.to(device=device, dtype=dtype)

    with torch.no_grad():
        return Problem(
            input_dim=dim,
            train_box=(lo, hi),
            test_box=(tlo, thi),
            train_x=put(train_x),
            train_y=put(train_y),
            test_x=put(test_x),
            test_y=put(target(test_x)),
            gen_x=put(gen_x),
            gen_y=put(target(gen_x)) if len(gen_x) else put(torch.zeros(0, dtype=torch.float64)),
            plot_x=put(plot_x),
            plot_y=put(target(plot_x)),
            plot_shape=plot_shape,
            collocation_x=put(collocation_x),
            boundary_x=put(boundary_x),
        )


def to_numpy(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


PICTURE_POINTS = (200, 80)  # at most this many collocation and boundary points go into the picture


def picture_geometry(p: Problem, *, fitted: bool, time_dim: Optional[int]) -> Geometry:
    """Where the run's fit is drawn: the plot grid, its target, the training points (none when
    ``fitted`` is false: pure physics), subsampled PDE points and the axis names."""
    d = p.input_dim
    return Geometry(
        input_dim=d,
        plot_x=to_numpy(p.plot_x),
        plot_shape=p.plot_shape,
        plot_target=to_numpy(p.plot_y),
        train_x=to_numpy(p.train_x if fitted else p.train_x[:0]),
        train_y=to_numpy(p.train_y if fitted else p.train_y[:0]),
        train_box=p.train_box,
        test_box=p.test_box,
        collocation_x=_subsample(p.collocation_x, PICTURE_POINTS[0], d),
        boundary_x=_subsample(p.boundary_x, PICTURE_POINTS[1], d),
        axis_names=_axis_names(d, time_dim),
    )


def _subsample(points: Optional[Tensor], most: int, input_dim: int) -> np.ndarray:
    """At most ``most`` of ``points``, evenly spaced in their order; (0, d) without any."""
    if points is None or not len(points):
        return np.empty((0, input_dim))
    keep = np.unique(np.round(np.linspace(0, len(points) - 1, min(most, len(points)))).astype(int))
    return to_numpy(points)[keep].reshape(len(keep), input_dim)


def _axis_names(input_dim: int, time_dim: Optional[int]) -> tuple[str, ...]:
    """x (x₁, x₂, ... for several) for the space inputs and t for the time input; () without time."""
    if time_dim is None:
        return ()
    space = ["x"] if input_dim == 2 else [f"x{'₁₂₃₄₅₆₇₈₉'[i]}" for i in range(input_dim - 1)]
    return tuple(space.pop(0) if i != time_dim else "t" for i in range(input_dim))

"""Target functions y = f(x): torch functions of x with shape (n, input_dim) returning (n,).

A config option names one by ``_target_`` (a dotted path) and passes ``params`` as keyword
arguments; any importable function with that signature works (see README, "Custom target").
They are differentiable in x, so PDE residuals can be checked on them; the last ones are
the exact solutions of the built-in PDE losses (pde.py), which test_error compares the net with.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor


def sin(x: Tensor, frequency: float = 1.0, amplitude: float = 1.0) -> Tensor:
    """A plane wave: amplitude * sin(frequency * (x_1 + ... + x_d)); sin(x) in 1D."""
    return amplitude * torch.sin(frequency * x.sum(dim=1))


def poly(x: Tensor, coeffs: Sequence[float] = (0.0, 1.0, 0.0, -0.15)) -> Tensor:
    """sum_i p(x_i) with p(t) = coeffs[0] + coeffs[1] t + coeffs[2] t^2 + ..."""
    out = torch.zeros_like(x)
    for c in reversed(list(coeffs)):  # Horner
        out = out * x + c
    return out.sum(dim=1)


def rbf(
    x: Tensor,
    centers: Sequence[float | Sequence[float]] = (-2.0, 0.0, 1.5),
    weights: Sequence[float] = (1.0, -0.8, 0.6),
    width: float = 0.7,
) -> Tensor:
    """Gaussian bumps sum_j w_j exp(-|x - c_j|^2 / (2 width^2)); a scalar centre c means
    the point (c, ..., c)."""
    if len(centers) != len(weights):
        raise ValueError(f"rbf needs one weight per centre: got {len(centers)} centres and {len(weights)} weights")
    c = torch.tensor([[ci] * x.shape[1] if isinstance(ci, (int, float)) else list(ci) for ci in centers], dtype=x.dtype, device=x.device)
    w = torch.tensor(list(weights), dtype=x.dtype, device=x.device)
    sq = ((x[:, None, :] - c[None, :, :]) ** 2).sum(dim=2)
    return (w * torch.exp(-sq / (2 * width**2))).sum(dim=1)


def sin_cos2d(x: Tensor, frequency: float = 1.0) -> Tensor:
    """sin(f x_1) cos(f x_2)."""
    return torch.sin(frequency * x[:, 0]) * torch.cos(frequency * x[:, 1])


def ripple2d(x: Tensor, frequency: float = 2.0) -> Tensor:
    """A radial ripple sin(f r) / (1 + r / pi), r = |x|, damped away from the origin."""
    r = torch.sqrt((x**2).sum(dim=1) + 1e-12)
    return torch.sin(frequency * r) / (1 + r / math.pi)


def saddle2d(x: Tensor, scale: float = 0.1) -> Tensor:
    """scale * (x_1^2 - x_2^2)."""
    return scale * (x[:, 0] ** 2 - x[:, 1] ** 2)


# Exact solutions of the PDE losses (pde.py).


def sin_sum(x: Tensor, frequency: float = 1.0) -> Tensor:
    """Σ_j sin(frequency x_j): sin(kx) in 1D, sin(kx) + sin(ky) in 2D. Δu = -k² u."""
    return torch.sin(frequency * x).sum(dim=1)


def sin_product(x: Tensor, frequency: float = 1.0) -> Tensor:
    """Π_j sin(frequency x_j): sin(kx) in 1D, sin(kx) sin(ky) in 2D. Δu = -d k² u; zero on
    the boundary of [-π/k, π/k]^d."""
    s = torch.sin(frequency * x)
    out = s[:, 0]
    for j in range(1, x.shape[1]):  # not torch.prod: its backward divides by the factors
        out = out * s[:, j]
    return out


# Exact solutions that are eigenfunctions of the Laplacian: name -> (u*, λ(d, k)) with Δu* = λ u*.
LAPLACE_EIGENFUNCTIONS: dict[str, tuple[Callable[..., Tensor], Callable[[int, float], float]]] = {
    "sin_sum": (sin_sum, lambda d, k: -(k**2)),
    "sin_product": (sin_product, lambda d, k: -d * k**2),
}


def heat_decay(x: Tensor, alpha: float = 0.1, frequency: float = 1.0) -> Tensor:
    """A decaying sine mode of the heat equation, inputs (x, t):
    exp(-alpha (frequency π)² t) sin(frequency π x)."""
    k = frequency * math.pi
    return torch.exp(-alpha * k**2 * x[:, 1]) * torch.sin(k * x[:, 0])


def burgers_front(x: Tensor, nu: float = 0.05, amplitude: float = 0.5, speed: float = 0.5, shift: float = 0.25) -> Tensor:
    """The travelling viscous front of Burgers' equation, inputs (x, t):
    speed - amplitude tanh(amplitude (x - shift - speed t) / (2 nu)); it goes from
    speed + amplitude (left) to speed - amplitude (right), width ~ 2 nu / amplitude."""
    xi = x[:, 0] - shift - speed * x[:, 1]
    return speed - amplitude * torch.tanh(amplitude * xi / (2 * nu))

"""What every curvature operator and eigen-solver shares: the operator protocol, the result
record, and the helpers on flat parameter vectors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import torch
from torch import Tensor

LossFn = Callable[[Sequence[Tensor]], Tensor]


class Operator(Protocol):
    """A symmetric matrix-free operator on flat vectors: all the solvers need to know."""

    size: int
    device: torch.device
    dtype: torch.dtype
    hvps: int

    def matvec(self, v: Tensor) -> Tensor: ...


class MemberOperator(Protocol):
    """E symmetric operators of one size applied at once (an ensemble's block-diagonal Hessian):
    ``matvec`` maps (members, size) rows to (members, size), row e by member e's operator.
    ``size`` is one member's."""

    members: int
    size: int
    device: torch.device
    dtype: torch.dtype

    def matvec(self, v: Tensor) -> Tensor: ...


@dataclass
class EigenResult:
    """Top-k eigenpairs of one operator, and what finding them cost.

    ``eigenvalues`` and ``residuals`` are float64 on the CPU; ``eigenvectors`` has unit columns
    in the flat parameter space, in the parameters' dtype and device.
    """

    eigenvalues: Tensor  # (k,), largest algebraic first
    eigenvectors: Tensor  # (n, k)
    residuals: Tensor  # (k,), ||H v_i - lambda_i v_i||
    hvps: int  # Hessian-vector products spent on this measurement
    iterations: int
    converged: bool  # every residual <= tol * |lambda_i|
    hvp: str = ""  # Hessian-vector product variant used ("exact" for the dense method)
    bottom: EigenResult | None = None  # the smallest algebraic pair, when the solver was asked for it

    @property
    def sharpness(self) -> float:
        """The top (algebraic) eigenvalue."""
        return float(self.eigenvalues[0])


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate tensors into one flat vector, in order."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a flat vector into views shaped like ``like``."""
    chunks = torch.split(vector, [p.numel() for p in like])
    return [c.view_as(p) for c, p in zip(chunks, like)]


def differentiable(params: Sequence[Tensor]) -> list[Tensor]:
    """``params`` as tensors that require grad (detached copies where they did not), after
    checking they share one dtype and one device, as flat vectors over them must."""
    params = list(params)
    if len({(p.dtype, p.device) for p in params}) != 1:
        raise ValueError("all parameters must share one dtype and one device")
    return [p if p.requires_grad else p.detach().requires_grad_(True) for p in params]


def unit(v: Tensor) -> Tensor:
    """``v`` scaled to norm 1 (the zero vector stays zero)."""
    norm = torch.linalg.vector_norm(v)
    return v / norm if norm > 0 else v


def random_vector(n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """A standard normal float64 vector, drawn on the CPU so that a seed means the same on any device."""
    return torch.randn(n, dtype=torch.float64, generator=generator).to(device)


def product(op: Operator, v: Tensor) -> Tensor:
    """One product ``op.matvec(v)`` in the operator's dtype, returned in float64."""
    return op.matvec(v.to(op.dtype)).to(torch.float64)


def orthogonalize(w: Tensor, basis: Tensor) -> Tensor:
    """Remove from ``w`` its components along the orthonormal rows of ``basis``; twice (CGS2).
    Batched: ``w`` (E, n) and ``basis`` (E, m, n), each row of ``w`` against its own basis."""
    if basis.shape[-2] == 0:
        return w
    for _ in range(2):
        if w.dim() == 1:
            w = w - basis.T @ (basis @ w)
        else:
            w = w - ((w.unsqueeze(-2) @ basis.mT) @ basis).squeeze(-2)  # row-vector form: 4x bmm's column form on CPU
    return w


def rademacher_vector(n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """A float64 vector of independent ±1 entries, drawn on the CPU like ``random_vector``."""
    return (2.0 * torch.randint(0, 2, (n,), generator=generator, dtype=torch.int64) - 1.0).to(torch.float64).to(device)

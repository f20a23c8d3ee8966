"""Boundary conditions of the PDE problems: one small class per kind, each computing its own
residual on the boundary points, chosen by name from ``BOUNDARY_CONDITIONS``.

Faces are recognised by a coordinate equal to the smallest or largest coordinate of the
boundary points (lo or hi). The initial face t = lo of a time-dependent problem, and any
point on no spatial face, always carries u = u* (the initial condition), whatever the kind.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from .config import ConfigError

Field = Callable[[Tensor], Tensor]  # u: (n, d) -> (n,), e.g. the network


def _exact(solution: Field, x: Tensor) -> Tensor:
    with torch.no_grad():
        return solution(x)


def spatial_faces(xb: Tensor, time_dim: Optional[int]) -> tuple[Tensor, Tensor]:
    """For every point, the spatial dimension of its face (-1 if on none) and whether that
    face is the hi one."""
    lo, hi = xb.min(), xb.max()
    on_lo, on_hi = xb == lo, xb == hi
    if time_dim is not None:
        on_lo[:, time_dim] = False
        on_hi[:, time_dim] = False
    on = on_lo | on_hi
    face = torch.where(on.any(dim=1), on.to(torch.int64).argmax(dim=1), -1)
    hi_side = on_hi.gather(1, face.clamp(min=0).unsqueeze(1)).squeeze(1)
    return face, hi_side


class BoundaryCondition:
    """What holds on the spatial faces. Subclasses set ``name`` and write ``on_faces``."""

    name: str

    def residual(self, u: Field, xb: Tensor, solution: Field, time_dim: Optional[int] = None) -> Tensor:
        """The residual at the boundary points xb (m, d) of a problem with exact solution
        ``solution``: (m,). Differentiable w.r.t. whatever u depends on."""
        xb = xb.detach()
        face, on_hi = spatial_faces(xb, time_dim)
        u_b, on_face = self.on_faces(u, xb, face, on_hi, solution)
        return torch.where(face >= 0, on_face, u_b - _exact(solution, xb))

    def on_faces(self, u: Field, xb: Tensor, face: Tensor, on_hi: Tensor, solution: Field) -> tuple[Tensor, Tensor]:
        """u at xb, and the residual of this condition at the points on a spatial face."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Dirichlet(BoundaryCondition):
    """u = u* on every face (the initial one included)."""

    name = "dirichlet"

    def residual(self, u: Field, xb: Tensor, solution: Field, time_dim: Optional[int] = None) -> Tensor:
        xb = xb.detach()
        return u(xb) - _exact(solution, xb)


class Neumann(BoundaryCondition):
    """∂u/∂n = ∂u*/∂n on the spatial faces, with n = ±e_face the outward normal."""

    name = "neumann"

    def on_faces(self, u: Field, xb: Tensor, face: Tensor, on_hi: Tensor, solution: Field) -> tuple[Tensor, Tensor]:
        from .pde import gradient  # pde.py imports this module

        cols = face.clamp(min=0).unsqueeze(1)
        xg = xb.detach().requires_grad_(True)
        u_b = u(xg)
        du = gradient(u_b, xg).gather(1, cols).squeeze(1)
        xe = xb.detach().requires_grad_(True)
        du_exact = gradient(solution(xe), xe).gather(1, cols).squeeze(1).detach()
        return u_b, torch.where(on_hi, 1.0, -1.0).to(xb.dtype) * (du - du_exact)


class Periodic(BoundaryCondition):
    """u equal on opposite spatial faces: each point is compared with its mirror image."""

    name = "periodic"

    def on_faces(self, u: Field, xb: Tensor, face: Tensor, on_hi: Tensor, solution: Field) -> tuple[Tensor, Tensor]:
        lo, hi = xb.min(), xb.max()
        mirror = xb.clone()
        rows = torch.arange(len(xb), device=xb.device)
        mirror[rows, face.clamp(min=0)] = torch.where(on_hi, lo, hi)
        both = u(torch.cat([xb, mirror]))
        u_b = both[: len(xb)]
        return u_b, u_b - both[len(xb) :]


class NoCondition(BoundaryCondition):
    """Nothing on the spatial faces; only the initial condition, if there is a time input."""

    name = "none"

    def on_faces(self, u: Field, xb: Tensor, face: Tensor, on_hi: Tensor, solution: Field) -> tuple[Tensor, Tensor]:
        u_b = u(xb)
        return u_b, torch.zeros_like(u_b)


BOUNDARY_CONDITIONS: dict[str, BoundaryCondition] = {c.name: c for c in (Dirichlet(), Neumann(), Periodic(), NoCondition())}


def boundary_condition(name: str) -> BoundaryCondition:
    """The condition called ``name``, or a ConfigError listing the names there are."""
    if name not in BOUNDARY_CONDITIONS:
        raise ConfigError(f"loss.pde.params.boundary={name!r} is not allowed: use one of {', '.join(BOUNDARY_CONDITIONS)}.")
    return BOUNDARY_CONDITIONS[name]

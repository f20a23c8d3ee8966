"""PDE residual operators for physics-informed losses: the derivative helpers, the built-in
problems (Poisson 1D/2D, heat, Burgers, Helmholtz) and ``CustomPDE`` for an equation a user
writes. Their exact solutions live with the other targets (functions.py), their boundary
conditions in boundary.py.

A problem knows its equation, its exact solution and its boundary condition; losses.py turns
``residual`` and ``boundary_residual`` into the ``loss_pde`` and ``loss_bc`` terms. Points
live in the box [lo, hi]^d (``data.train_range`` in every dimension); for a time-dependent
problem the last input is time t, and its boundary is the initial face t = lo plus the
spatial faces (no condition at t = hi).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Union

import torch
from torch import Tensor

from .boundary import BoundaryCondition, Dirichlet, Field, NoCondition, boundary_condition
from .config import ConfigError
from .targets import resolve_target
from .functions import LAPLACE_EIGENFUNCTIONS, burgers_front, heat_decay
from .params import check_keywords


# --------------------------------------------------------------------------------------
# Derivatives. `u` is a tensor of values (n,) computed *pointwise* from `x` (n, d), which
# requires grad: row i of u depends only on row i of x (true for an MLP), so one backward
# pass of u.sum() gives every point's gradient at once. Graphs are kept (create_graph), so
# the results can be differentiated again, w.r.t. x or the network's parameters.
# --------------------------------------------------------------------------------------


def gradient(u: Tensor, x: Tensor) -> Tensor:
    """∇u at every point: (n, d). Zero where u does not depend on x."""
    if not u.requires_grad:
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(u, x, grad_outputs=torch.ones_like(u), create_graph=True, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def derivative(u: Tensor, x: Tensor, dim: int, order: int = 1) -> Tensor:
    """∂^order u / ∂x_dim^order at every point: (n,). Mixed derivatives nest calls:
    ``derivative(derivative(u, x, 0), x, 1)`` is u_xy."""
    if order < 0:
        raise ValueError(f"derivative order must be >= 0, got {order}")
    for _ in range(order):
        u = gradient(u, x)[:, dim]
    return u


def laplacian(u: Tensor, x: Tensor, dims: Optional[list[int]] = None) -> Tensor:
    """Σ_j ∂²u/∂x_j² over ``dims`` (default: every input): (n,). One backward pass for the
    gradient, then one per dimension."""
    g = gradient(u, x)
    dims = range(x.shape[1]) if dims is None else dims
    return sum(gradient(g[:, j], x)[:, j] for j in dims)


# --------------------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------------------


class PDEProblem:
    """An equation N[u](x) = 0 on the box [lo, hi]^d with its exact solution and boundary
    conditions. Subclasses set ``input_dim`` (and ``time_dim`` if the last input is time)
    and write ``equation(x, u)`` with the derivative helpers, and ``solution(x)``.

    ``boundary`` says what holds on the spatial faces (boundary.py, chosen by name):
    ``dirichlet`` u = u*, ``neumann`` ∂u/∂n = ∂u*/∂n, ``periodic`` u equal on opposite faces,
    ``none`` nothing. The initial face t = lo of a time-dependent problem always has u = u*
    (the initial condition).
    """

    input_dim: int = 1
    time_dim: Optional[int] = None
    boundary: BoundaryCondition = Dirichlet()

    def equation(self, x: Tensor, u: Tensor) -> Tensor:
        """The residual N[u] at x (n, d) requiring grad, with u = u(x) (n,): (n,)."""
        raise NotImplementedError

    def solution(self, x: Tensor) -> Tensor:
        """The exact solution u*(x): (n,)."""
        raise NotImplementedError

    # -- residuals ------------------------------------------------------------------

    def residual(self, u: Field, x: Tensor) -> Tensor:
        """Interior residual N[u] at collocation points x (n, d): (n,). Differentiable (twice)
        w.r.t. whatever u depends on, e.g. the network's parameters."""
        x = x.detach().requires_grad_(True)
        return self.equation(x, u(x))

    def boundary_residual(self, u: Field, xb: Tensor) -> Tensor:
        """Residual of the boundary and initial conditions at xb from ``boundary_points``: (m,).
        Pass the whole set ``boundary_points`` returned: faces are told by its extreme coordinates."""
        return self.boundary.residual(u, xb, self.solution, self.time_dim)

    # -- points ---------------------------------------------------------------------

    def collocation_points(
        self, lo: float, hi: float, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32,
        device: Union[str, torch.device] = "cpu", sampling: str = "grid",
    ) -> Tensor:
        """Interior points of [lo, hi]^d: with ``sampling='grid'`` (the default) the k^d cell
        centres of a k-per-side grid, k = round(n^(1/d)); with ``'uniform'``, n uniform at random.
        (Evenly spread points train markedly better than random ones in 2D.)"""
        d = self.input_dim
        if sampling == "grid":
            k = max(1, round(n ** (1 / d)))
            side = lo + (torch.arange(k, dtype=torch.float64) + 0.5) * (hi - lo) / k
            pts = torch.cartesian_prod(*[side] * d).reshape(-1, d)
        elif sampling == "uniform":
            pts = lo + (hi - lo) * torch.rand(n, d, generator=generator, dtype=torch.float64, device=generator.device)
        else:
            raise ValueError(f"sampling={sampling!r} is not one of 'grid', 'uniform'")
        return pts.to(dtype=dtype, device=device)

    def boundary_points(
        self, lo: float, hi: float, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32,
        device: Union[str, torch.device] = "cpu", sampling: str = "grid",
    ) -> Tensor:
        """Points on the boundary faces (and the initial face t = lo): about n in all, split
        evenly between faces, evenly spaced (``grid``) or at random (``uniform``) along each
        face; in 1D the two end points. Face coordinates are exactly lo or hi."""
        d = self.input_dim
        faces = [(j, v) for j in range(d) for v in (lo, hi) if not (j == self.time_dim and v == hi)]
        per_face = 1 if d == 1 else max(1, n // len(faces))
        chunks = []
        for j, v in faces:
            if sampling == "grid":
                free = lo + (torch.arange(per_face, dtype=torch.float64) + 0.5) * (hi - lo) / per_face
                pts = free.reshape(-1, 1).repeat(1, d)  # d == 2 here (or 1: overwritten below)
            elif sampling == "uniform":
                pts = lo + (hi - lo) * torch.rand(per_face, d, generator=generator, dtype=torch.float64, device=generator.device)
            else:
                raise ValueError(f"sampling={sampling!r} is not one of 'grid', 'uniform'")
            pts = pts.cpu()
            pts[:, j] = v
            chunks.append(pts)
        return torch.cat(chunks).to(dtype=dtype, device=device)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


def _eigenfunction(solution: str) -> tuple[Callable[..., Tensor], Callable[[int, float], float]]:
    if solution not in LAPLACE_EIGENFUNCTIONS:
        raise ConfigError(
            f"loss.pde.params.solution={solution!r} is not an exact solution the built-in Poisson and Helmholtz "
            f"problems know: use function={' or function='.join(LAPLACE_EIGENFUNCTIONS)}, or write the equation "
            "as a neuroscope.pde.CustomPDE (see README, Physics-informed losses)."
        )
    return LAPLACE_EIGENFUNCTIONS[solution]


class Poisson(PDEProblem):
    """Δu = f on [lo, hi]^d, with f = Δu* for the exact solution ``solution`` (``sin_sum`` or
    ``sin_product`` at frequency k), both eigenfunctions of Δ: f = λ u*."""

    def __init__(self, input_dim: int, frequency: float = 1.0, solution: str = "sin_sum", boundary: str = "dirichlet"):
        self.input_dim = input_dim
        self.frequency = frequency
        self.solution_name = solution
        self._u, eigenvalue = _eigenfunction(solution)
        self.eigenvalue = eigenvalue(input_dim, frequency)
        self.boundary = boundary_condition(boundary)

    def solution(self, x: Tensor) -> Tensor:
        return self._u(x, self.frequency)

    def source(self, x: Tensor) -> Tensor:
        return self.eigenvalue * self.solution(x)

    def equation(self, x: Tensor, u: Tensor) -> Tensor:
        return laplacian(u, x) - self.source(x)


class Poisson1D(Poisson):
    """u'' = f on an interval, Dirichlet: u* = sin(kx), f = -k² sin(kx)."""

    def __init__(self, frequency: float = 1.0, solution: str = "sin_sum", boundary: str = "dirichlet"):
        super().__init__(1, frequency, solution, boundary)


class Poisson2D(Poisson):
    """Δu = f on a square, Dirichlet: u* = sin(kx) + sin(ky) (``sin_sum``, f = -k² u*) or
    sin(kx) sin(ky) (``sin_product``, f = -2k² u*)."""

    def __init__(self, frequency: float = 1.0, solution: str = "sin_sum", boundary: str = "dirichlet"):
        super().__init__(2, frequency, solution, boundary)


class Helmholtz(Poisson):
    """Δu + κ²u = f on a square, κ = ``wavenumber``, with f = (λ + κ²) u* for the same exact
    solutions as Poisson (Δu* = λ u*). Keep κ² below the first Dirichlet eigenvalue of -Δ on
    the box, 2 (π / (hi - lo))², or the problem is (nearly) singular."""

    def __init__(self, frequency: float = 1.0, wavenumber: float = 1.5, solution: str = "sin_sum", boundary: str = "dirichlet"):
        super().__init__(2, frequency, solution, boundary)
        self.wavenumber = wavenumber

    def equation(self, x: Tensor, u: Tensor) -> Tensor:
        k2 = self.wavenumber**2
        return laplacian(u, x) + k2 * u - (self.eigenvalue + k2) * self.solution(x)


class Heat(PDEProblem):
    """u_t = α u_xx, inputs (x, t), with u* = exp(-α(kπ)² t) sin(kπx): initial condition
    u(x, lo) = u*(x, lo) and Dirichlet (by default) at x = lo, hi."""

    input_dim = 2
    time_dim = 1

    def __init__(self, alpha: float = 0.1, frequency: float = 1.0, boundary: str = "dirichlet"):
        self.alpha = alpha
        self.frequency = frequency
        self.boundary = boundary_condition(boundary)

    def solution(self, x: Tensor) -> Tensor:
        return heat_decay(x, self.alpha, self.frequency)

    def equation(self, x: Tensor, u: Tensor) -> Tensor:
        g = gradient(u, x)
        u_xx = gradient(g[:, 0], x)[:, 0]
        return g[:, 1] - self.alpha * u_xx


class Burgers(PDEProblem):
    """Viscous Burgers u_t + u u_x = ν u_xx, inputs (x, t), with the travelling front
    ``burgers_front`` as exact solution: initial condition at t = lo, Dirichlet at x = lo, hi."""

    input_dim = 2
    time_dim = 1

    def __init__(self, nu: float = 0.05, amplitude: float = 0.5, speed: float = 0.5, shift: float = 0.25, boundary: str = "dirichlet"):
        self.nu = nu
        self.amplitude = amplitude
        self.speed = speed
        self.shift = shift
        self.boundary = boundary_condition(boundary)

    def solution(self, x: Tensor) -> Tensor:
        return burgers_front(x, self.nu, self.amplitude, self.speed, self.shift)

    def equation(self, x: Tensor, u: Tensor) -> Tensor:
        g = gradient(u, x)
        u_xx = gradient(g[:, 0], x)[:, 0]
        return g[:, 1] + u * g[:, 0] - self.nu * u_xx


def _resolve(fn: Union[str, Callable, None], what: str) -> Optional[Callable]:
    if fn is None or callable(fn):
        return fn
    return resolve_target(str(fn), key=f"loss.pde.params.{what}")


class CustomPDE(PDEProblem):
    """A PDE written by a user as a function of the inputs and the network's output:

        residual(x, u, **coefficients) -> (n,)   x (n, d) requires grad, u = net(x) (n,)

    using ``gradient``, ``derivative`` and ``laplacian`` from this module. ``residual`` and
    ``solution`` are callables or dotted paths; ``solution(x, **solution_params)`` is the
    exact solution (boundary values come from it). ``time_dim`` names the time input if
    there is one (its initial face t = lo then carries u = u*)."""

    def __init__(
        self,
        residual: Union[str, Callable],
        solution: Union[str, Callable, None] = None,
        input_dim: int = 1,
        boundary: str = "dirichlet",
        time_dim: Optional[int] = None,
        coefficients: Optional[Mapping[str, Any]] = None,
        solution_params: Optional[Mapping[str, Any]] = None,
    ):
        self.residual_fn = _resolve(residual, "residual")
        self.solution_fn = _resolve(solution, "solution")
        self.input_dim = int(input_dim)
        self.boundary = boundary_condition(boundary)
        self.time_dim = time_dim
        if time_dim is not None and not 0 <= time_dim < self.input_dim:
            raise ConfigError(f"loss.pde.params.time_dim={time_dim} is not an input of a {self.input_dim}-D problem (0 <= time_dim < input_dim).")
        self.coefficients = dict(coefficients or {})
        self.solution_params = dict(solution_params or {})
        check_keywords(self.residual_fn, self.coefficients, key="loss.pde.params.coefficients", target=str(residual), skip=2)
        if self.solution_fn is not None:
            check_keywords(self.solution_fn, self.solution_params, key="loss.pde.params.solution_params", target=str(solution), skip=1)
        if self.solution_fn is None and (not isinstance(self.boundary, NoCondition) or time_dim is not None):
            raise ConfigError(
                f"CustomPDE with boundary={boundary!r} needs loss.pde.params.solution (the boundary and initial "
                "values come from it): give the dotted path of the exact solution, or use boundary=none without time_dim."
            )

    def equation(self, x: Tensor, u: Tensor) -> Tensor:
        return self.residual_fn(x, u, **self.coefficients)

    def solution(self, x: Tensor) -> Tensor:
        if self.solution_fn is None:
            raise ValueError("this CustomPDE was built without solution=...")
        return self.solution_fn(x, **self.solution_params)

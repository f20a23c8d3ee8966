"""The generalized Gauss-Newton matrix of a sum-of-squares objective, matrix-free: the part of the
Hessian that curvature of the residuals themselves does not contribute.

For L(theta) = sum_t c_t ||r_t(theta)||^2 the Hessian is
    H = sum_t 2 c_t (J_t^T J_t + sum_i r_{t,i} grad^2 r_{t,i}),   J_t = d r_t / d theta,
and G keeps the first part. So G = (2/n) J^T J for mean((f - y)^2), and for the residual of a
PDE linear in u (Poisson, Helmholtz, heat) J is the Jacobian of the residual vector: G differs
from H only through the network's own curvature, weighted by the residuals.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from .base import differentiable, flatten, unflatten

Residuals = Callable[[Sequence[Tensor]], dict[str, tuple[Tensor, float]]]
"""params -> {term: (r, c)} with term = c * sum(r^2)."""


class GaussNewtonOperator:
    """G = sum_t 2 c_t J_t^T J_t at ``params``, as a symmetric operator on flat vectors.

    The residuals are computed once, with J_t^T u kept as a graph in a dummy u; each ``matvec``
    takes J_t v as the derivative of <J_t^T u, v> in u, then J_t^T (J_t v) by one backward pass
    (no forward-mode AD, so it works through the input derivatives of a PINN residual). Every
    ``matvec`` adds one to ``hvps`` (a product: two backward passes per term).
    """

    def __init__(self, residuals_fn: Residuals, params: Sequence[Tensor]) -> None:
        self.params = differentiable(params)
        self.size = sum(p.numel() for p in self.params)
        self.dtype, self.device = self.params[0].dtype, self.params[0].device
        self.hvps = 0
        self._pieces: list[tuple[Tensor, float, Tensor, list[Tensor]]] = []
        with torch.enable_grad():
            for r, c in residuals_fn(self.params).values():
                r = r.reshape(-1)
                if not r.requires_grad:  # a residual that does not depend on the parameters
                    continue
                u = torch.zeros_like(r, requires_grad=True)
                jtu = torch.autograd.grad(r, self.params, grad_outputs=u, create_graph=True, allow_unused=True)
                self._pieces.append((r, float(c), u, list(jtu)))

    def matvec(self, v: Tensor) -> Tensor:
        """G v, for a flat ``v`` in the parameters' dtype and device."""
        self.hvps += 1
        out = torch.zeros_like(v)
        with torch.enable_grad():
            for r, c, u, jtu in self._pieces:
                pairs = [(g, w) for g, w in zip(jtu, unflatten(v, self.params)) if g is not None and g.requires_grad]
                if not pairs:
                    continue
                (jv,) = torch.autograd.grad(
                    [g for g, _ in pairs], u, grad_outputs=[w for _, w in pairs], retain_graph=True, allow_unused=True
                )
                if jv is None:
                    continue
                jtjv = torch.autograd.grad(r, self.params, grad_outputs=jv, retain_graph=True, allow_unused=True)
                out += 2.0 * c * flatten([torch.zeros_like(p) if g is None else g for g, p in zip(jtjv, self.params)])
        return out

    __matmul__ = matvec

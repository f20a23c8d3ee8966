"""The objective being descended: a weighted sum of terms, each recorded on its own.

    loss = data_weight * data + l2_weight * sum(theta^2) + pde_weight * mean(r^2) + bc_weight * mean(b^2)

with data = mean((f(x) - y)^2) (``mse``) or mean(|f(x) - y|) (``l1``), r the PDE residual at
collocation points and b the boundary residual. Terms with weight 0 are left out. The
recorded ``loss_<term>`` values are the weighted contributions, so they add up to ``loss``.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from .config import ConfigError, DataTerm, LossConfig

from .targets import resolve_target
from .data import Problem
from .params import check_keywords

Net = Callable[[Tensor], Tensor]


def mse(pred: Tensor, target: Tensor) -> Tensor:
    diff = pred - target
    return (diff * diff).mean()


def l1(pred: Tensor, target: Tensor) -> Tensor:
    return (pred - target).abs().mean()


DATA_TERMS: dict[DataTerm, Callable[[Tensor, Tensor], Tensor]] = {DataTerm.mse: mse, DataTerm.l1: l1}


class Objective:
    """Callable as ``objective(net, params) -> (loss, {term: weighted value})``, where ``net``
    maps inputs (n, d) to outputs (n,) and ``params`` are the tensors the L2 term penalises."""

    def __init__(self, cfg: LossConfig, problem: Problem, pde=None):
        self.problem = problem
        data_fn = DATA_TERMS[cfg.data_term]
        candidates: dict[str, tuple[float, Callable[[Net, Sequence[Tensor]], Tensor]]] = {
            "data": (cfg.data_weight, lambda net, params: data_fn(net(problem.train_x), problem.train_y)),
            "l2": (cfg.l2_weight, lambda net, params: sum((q * q).sum() for q in params)),
        }
        if pde is not None:
            candidates["pde"] = (cfg.pde_weight, lambda net, params: _mean_square(pde.residual(net, problem.collocation_x)))
            candidates["bc"] = (cfg.bc_weight, lambda net, params: _mean_square(pde.boundary_residual(net, problem.boundary_x)))
        self.terms = {name: (float(w), fn) for name, (w, fn) in candidates.items() if w > 0}
        # each least-squares term as its residual vector, for the Gauss-Newton matrix
        residuals: dict[str, Callable[[Net, Sequence[Tensor]], Tensor]] = {
            "l2": lambda net, params: torch.cat([q.reshape(-1) for q in params]),
        }
        if cfg.data_term == DataTerm.mse:
            residuals["data"] = lambda net, params: net(problem.train_x) - problem.train_y
        if pde is not None:
            residuals["pde"] = lambda net, params: pde.residual(net, problem.collocation_x)
            residuals["bc"] = lambda net, params: pde.boundary_residual(net, problem.boundary_x)
        self._residuals = residuals
        if not self.terms:
            raise ConfigError(
                "Every loss weight is 0 (loss.data_weight, loss.l2_weight and, with a PDE, loss.pde_weight and "
                "loss.bc_weight): the objective would be empty. Give at least one term a weight > 0."
            )

    @property
    def term_names(self) -> list[str]:
        return list(self.terms)

    def __call__(self, net: Net, params: Sequence[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        values = {name: w * fn(net, params) for name, (w, fn) in self.terms.items()}
        return sum(values.values()), values

    def residuals(self, net: Net, params: Sequence[Tensor]) -> dict[str, tuple[Tensor, float]]:
        """Every term as ``(r, c)`` with its weighted value = c * sum(r^2): the l2 term a sum
        (c = weight), the others means (c = weight / len(r)). Raises ValueError if a term is no
        sum of squares (the l1 data term), whose Gauss-Newton matrix is not defined."""
        out = {}
        for name, (weight, _) in self.terms.items():
            if name not in self._residuals:
                raise ValueError(f"the {name} term is not a sum of squares: it has no Gauss-Newton matrix")
            r = self._residuals[name](net, params)
            out[name] = (r, weight if name == "l2" else weight / r.numel())
        return out


def _mean_square(r: Tensor) -> Tensor:
    return (r * r).mean()


def build_pde(cfg: LossConfig, input_dim: int) -> Optional[object]:
    """The PDE problem named by ``loss.pde._target_`` (called with ``loss.pde.params``), or None."""
    if cfg.pde is None:
        return None
    factory = resolve_target(cfg.pde._target_, key="loss.pde._target_", kind="pde")
    check_keywords(factory, cfg.pde.params, key="loss.pde.params", target=cfg.pde._target_)
    try:
        pde = factory(**dict(cfg.pde.params))
    except TypeError as e:
        raise ConfigError(f"loss={cfg.name}: {cfg.pde._target_} does not accept loss.pde.params={dict(cfg.pde.params)} ({e}).") from None
    if getattr(pde, "input_dim", input_dim) != input_dim:
        raise ConfigError(
            f"loss={cfg.name} is a PDE in {pde.input_dim} input dimension(s), but input_dim={input_dim}: "
            f"set input_dim={pde.input_dim} (the loss option does unless the command line overrides it)."
        )
    return pde

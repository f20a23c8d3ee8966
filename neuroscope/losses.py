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


def mse(pred: Tensor, target: Tensor, dim: Optional[int] = None) -> Tensor:
    """The mean squared difference; per member (over the last dimension) with ``dim=-1``."""
    diff = pred - target
    return (diff * diff).mean() if dim is None else (diff * diff).mean(dim=dim)


def l1(pred: Tensor, target: Tensor, dim: Optional[int] = None) -> Tensor:
    diff = (pred - target).abs()
    return diff.mean() if dim is None else diff.mean(dim=dim)


DATA_TERMS: dict[DataTerm, Callable[..., Tensor]] = {DataTerm.mse: mse, DataTerm.l1: l1}


class Objective:
    """Callable as ``objective(net, params) -> (loss, {term: weighted value})``, where ``net``
    maps inputs (n, d) to outputs (n,) and ``params`` are the tensors the L2 term penalises.

    For an ensemble (``problem.members`` = E, its point sets stacked (E, n, d), ``net`` mapping
    (E, n, d) to (E, n) and each parameter's leading dimension the member's) every value is per
    member, shape (E,), and each member has its own weights: ``cfg`` is then the members'
    LossConfigs (one shared by all is fine). The sum of the members' losses has every member's
    gradient, members being independent. PDE residuals see the members' points flattened
    point-major (row i*E + e is member e's point i): each row its own input, so derivatives
    with respect to the inputs stay per member, and the residual code needs no member dimension.
    """

    def __init__(self, cfg: LossConfig | Sequence[LossConfig], problem: Problem, pde=None):
        self.problem = problem
        cfgs = list(cfg) if isinstance(cfg, (list, tuple)) else [cfg]
        cfg = cfgs[0]
        self.members = problem.members
        data_fn = DATA_TERMS[cfg.data_term]
        dim = None if self.members is None else -1
        colloc, bound = (_point_major(problem.collocation_x), _point_major(problem.boundary_x))
        candidates: dict[str, Callable[[Net, Sequence[Tensor]], Tensor]] = {
            "data": lambda net, params: data_fn(net(problem.train_x), problem.train_y, dim),
            "l2": lambda net, params: sum(self._sum((q * q)) for q in params),
        }
        if pde is not None:
            candidates["pde"] = lambda net, params: self._mean_square(pde.residual(self._flat(net), colloc))
            candidates["bc"] = lambda net, params: self._mean_square(pde.boundary_residual(self._flat(net), bound))
        on = [name for name in candidates if getattr(cfg, f"{name}_weight") > 0]
        self.terms = {name: (self._weight(cfgs, name), candidates[name]) for name in on}
        # each least-squares term as its residual vector, for the Gauss-Newton matrix (one run only)
        residuals: dict[str, Callable[[Net, Sequence[Tensor]], Tensor]] = {
            "l2": lambda net, params: torch.cat([q.reshape(-1) for q in params]),
        }
        if cfg.data_term == DataTerm.mse:
            residuals["data"] = lambda net, params: (net(problem.train_x) - problem.train_y).reshape(-1)
        if pde is not None:
            residuals["pde"] = lambda net, params: pde.residual(self._flat(net), colloc)
            residuals["bc"] = lambda net, params: pde.boundary_residual(self._flat(net), bound)
        self._residuals = residuals
        if not self.terms:
            raise ConfigError(
                "Every loss weight is 0 (loss.data_weight, loss.l2_weight and, with a PDE, loss.pde_weight and "
                "loss.bc_weight): the objective would be empty. Give at least one term a weight > 0."
            )

    def _weight(self, cfgs: Sequence[LossConfig], name: str) -> float | Tensor:
        """A term's weight: a number for one run, the members' weights (E,) for an ensemble."""
        values = [float(getattr(c, f"{name}_weight")) for c in cfgs]
        if self.members is None:
            return values[0]
        if len(values) == 1:
            values = values * self.members
        return torch.tensor(values, dtype=self.problem.train_y.dtype, device=self.problem.train_y.device)

    def _sum(self, q: Tensor) -> Tensor:
        """Sum of a parameter-shaped tensor: per member for an ensemble."""
        return q.sum() if self.members is None else q.reshape(self.members, -1).sum(dim=1)

    def _flat(self, net: Net) -> Net:
        """The ensemble's net on point-major flat inputs (m*E, d) -> (m*E,)."""
        if self.members is None:
            return net
        e = self.members
        return lambda x: net(x.view(-1, e, x.shape[-1]).transpose(0, 1)).transpose(0, 1).reshape(-1)

    def _mean_square(self, r: Tensor) -> Tensor:
        if self.members is None:
            return _mean_square(r)
        r = r.view(-1, self.members).transpose(0, 1)
        return (r * r).mean(dim=1)

    @property
    def term_names(self) -> list[str]:
        return list(self.terms)

    def __call__(self, net: Net, params: Sequence[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        values = {name: w * fn(net, params) for name, (w, fn) in self.terms.items()}
        return sum(values.values()), values

    def residuals(self, net: Net, params: Sequence[Tensor]) -> dict[str, tuple[Tensor, float]]:
        """Every term as ``(r, c)`` with its weighted value = c * sum(r^2): the l2 term a sum
        (c = weight), the others means (c = weight / len(r)). Raises ValueError if a term is no
        sum of squares (the l1 data term), whose Gauss-Newton matrix is not defined. One run
        (or an ensemble of one) only."""
        if self.members not in (None, 1):
            raise ValueError("the Gauss-Newton residuals are one run's: this objective is an ensemble of several")
        out = {}
        for name, (weight, _) in self.terms.items():
            if name not in self._residuals:
                raise ValueError(f"the {name} term is not a sum of squares: it has no Gauss-Newton matrix")
            r = self._residuals[name](net, params)
            w = float(weight) if self.members is None else float(weight[0])
            out[name] = (r, w if name == "l2" else w / r.numel())
        return out


def _point_major(x: Optional[Tensor]) -> Optional[Tensor]:
    """Stacked points (E, m, d) as (m*E, d), row i*E + e member e's point i; plain ones as they are."""
    if x is None or x.dim() == 2:
        return x
    return x.transpose(0, 1).reshape(-1, x.shape[-1])


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

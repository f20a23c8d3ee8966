"""The update rules the trainer can take, written out (no torch.optim): plain gradient descent
(the default), heavy-ball (Polyak) momentum and Nesterov momentum, each with the stability
threshold ("edge") its sharpness settles at, and the label a legend names it by.

Every rule's step is  Δθ = −lr·∇L(θ) + m,  where ``step`` returns the momentum term m (None
for gradient descent) and advances the rule's state; the trainer applies Δθ and projects it on
the top eigenvector. The edges come from the linear recursion each rule follows on a
quadratic L = ½·a·θ² (h = lr·a): the rule is stable while both roots z of its characteristic
polynomial have |z| < 1, and at the edge a root leaves the unit circle through z = −1 (the
period-2 oscillation of the edge of stability, Cohen et al. 2021, appendix on momentum).

- gradient descent: θ' = (1 − h)θ, stable for h < 2, edge 2/lr.
- heavy ball, θ' = θ − lr∇L(θ) + β(θ − θ_prev): z² − (1 + β − h)z + β = 0. At z = −1:
  2 + 2β − h = 0, edge (2 + 2β)/lr (|z|² = β < 1 for complex roots, z = 1 needs h = 0).
- Nesterov, in the form PyTorch uses, with the gradient at the parameters θ the model holds
  (the look-ahead point of Sutskever et al.'s form): v' = βv − lr∇L(θ), θ' = θ − lr∇L(θ) + βv'.
  On the quadratic, (θ, v) ↦ ((1 − h − βh)θ + β²v, −hθ + βv): trace (1 + β)(1 − h),
  determinant β(1 − h), so z² − (1 + β)(1 − h)z + β(1 − h) = 0 (the same polynomial as
  Sutskever's y = θ + β(θ − θ_prev), θ' = y − lr∇L(y)). Jury's conditions: p(1) = h > 0,
  |β(1 − h)| < 1 (h < 1 + 1/β), and p(−1) = 1 + (1 − h)(1 + 2β) > 0, the binding one:
  h < (2 + 2β)/(1 + 2β), edge (2 + 2β)/(lr(1 + 2β)).

``tests/test_momentum.py`` checks each edge on the quadratic: stable just below, divergent
just above. This module imports no torch, so a sweep summary can compute a job's edge.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Optional

from .config import ConfigError, OptimizerConfig

from .targets import resolve_target

if TYPE_CHECKING:
    from torch import Tensor


class UpdateRule(ABC):
    """One update rule: its step's momentum term, its edge of stability, its state."""

    edge_label: str  # the edge as a formula in lr and β, for legends: "2/lr", ...

    def __init__(self, momentum: float = 0.0) -> None:
        self.momentum = float(momentum)

    @property
    @abstractmethod
    def label(self) -> str:
        """The rule's name for legends and logs, with its momentum."""

    @abstractmethod
    def edge(self, lr: float) -> float:
        """The sharpness above which the rule's step diverges on a quadratic."""

    @abstractmethod
    def step(self, flat_grad: "Tensor", lr: float) -> Optional["Tensor"]:
        """The momentum term m of Δθ = −lr·∇L + m at ∇L = ``flat_grad``; advances the state by
        assigning new tensors to its attributes, never changing one in place (the trainer keeps
        the attributes of earlier steps to go back to: ``TrainSettings.flush_every``)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``."""


class GradientDescent(UpdateRule):
    """θ ← θ − lr·∇L(θ): no state, edge 2/lr."""

    edge_label = "2/lr"

    def __init__(self, momentum: float = 0.0) -> None:
        if momentum != 0:
            raise ConfigError(
                f"optimizer=gd with optimizer.momentum={momentum}: plain gradient descent has no momentum. "
                "Use optimizer=heavy_ball or optimizer=nesterov for momentum, or leave optimizer.momentum at 0."
            )
        super().__init__(0.0)

    @property
    def label(self) -> str:
        return "gradient descent"

    def edge(self, lr: float) -> float:
        return 2.0 / lr

    def step(self, flat_grad: "Tensor", lr: float) -> Optional["Tensor"]:
        return None


class _WithVelocity(UpdateRule):
    """A momentum rule: its state is a velocity vector (zero before the first step)."""

    def __init__(self, momentum: float = 0.0) -> None:
        super().__init__(momentum)
        self.velocity: Optional["Tensor"] = None

    def _previous(self, flat_grad: "Tensor") -> "Tensor":
        """The last velocity, on the gradient's device and dtype (a loaded one is on the CPU)."""
        return flat_grad.new_zeros(flat_grad.shape) if self.velocity is None else self.velocity.to(flat_grad)

    def state_dict(self) -> dict[str, Any]:
        return {"velocity": None if self.velocity is None else self.velocity.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.velocity = state.get("velocity")


class HeavyBall(_WithVelocity):
    """θ ← θ − lr·∇L(θ) + β(θ − θ_prev) (Polyak); velocity = θ − θ_prev; edge (2 + 2β)/lr."""

    edge_label = "(2+2β)/lr"

    @property
    def label(self) -> str:
        return f"heavy ball, β = {self.momentum:g}"

    def edge(self, lr: float) -> float:
        return (2.0 + 2.0 * self.momentum) / lr

    def step(self, flat_grad: "Tensor", lr: float) -> Optional["Tensor"]:
        previous = self._previous(flat_grad)
        extra = self.momentum * previous
        self.velocity = extra - lr * flat_grad  # this step's Δθ
        return extra


class Nesterov(_WithVelocity):
    """v ← βv − lr·∇L(θ), θ ← θ − lr·∇L(θ) + βv (PyTorch's form, the gradient at the point
    the model holds); edge (2 + 2β)/(lr(1 + 2β))."""

    edge_label = "(2+2β)/(lr(1+2β))"

    @property
    def label(self) -> str:
        return f"Nesterov, β = {self.momentum:g}"

    def edge(self, lr: float) -> float:
        b = self.momentum
        return (2.0 + 2.0 * b) / (lr * (1.0 + 2.0 * b))

    def step(self, flat_grad: "Tensor", lr: float) -> Optional["Tensor"]:
        self.velocity = self.momentum * self._previous(flat_grad) - lr * flat_grad
        return self.momentum * self.velocity


def build_rule(cfg: OptimizerConfig) -> UpdateRule:
    """The update rule ``optimizer._target_`` names, with ``optimizer.momentum``."""
    factory = resolve_target(cfg._target_, key="optimizer._target_", kind="optimizer")
    rule = factory(momentum=cfg.momentum)
    if not isinstance(rule, UpdateRule):
        raise ConfigError(
            f"optimizer._target_={cfg._target_!r} made a {type(rule).__name__}, not an update rule: it must name a "
            "subclass of neuroscope.optimizers.UpdateRule (GradientDescent, HeavyBall, Nesterov or your own)."
        )
    return rule

"""Gradient flow beside gradient descent: dθ/dt = −∇L(θ) from the same initialization,
integrated on GD's time grid t = lr·step with the Dormand–Prince 5(4) pair under an error
tolerance (``reference=flow``). GD tracks the flow while its sharpness is below 2/lr and
leaves it at the edge of stability (Cohen et al. 2021); the flow itself turns stiff where the
sharpness is large, so the integrator takes as many substeps as its error control asks for
and counts them.

``dormand_prince`` integrates any autonomous ODE y' = f(y) over one interval; ``GradientFlow``
is what the trainer calls for each row (the flow at that row's time, its loss, errors,
distance to GD and, on curvature steps, its sharpness from its own SharpnessTracker).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from .losses import mse

if TYPE_CHECKING:
    from .curvature import SharpnessTracker
    from .data import Problem

log = logging.getLogger(__name__)

# Dormand & Prince (1980), RK5(4)7FM: the nodes' coefficients, the 5th-order weights (the
# last row of A: first same as last) and the difference of the 5th- and 4th-order weights.
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)
SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 5.0


@dataclass
class Interval:
    """The outcome of integrating over one interval: where it ended and what it cost."""

    y: Tensor
    f_y: Tensor  # f at the end point: the first stage of the next step (FSAL)
    h: float  # the step size to try next
    accepted: int  # Runge-Kutta steps taken
    evaluations: int  # evaluations of f, rejected steps included
    completed: bool  # False when max_steps attempts did not reach the interval's end


def dormand_prince(
    f: Callable[[Tensor], Tensor], y: Tensor, length: float, *, rtol: float, atol: float, h: float,
    f_y: Optional[Tensor] = None, max_steps: int = 10000,
) -> Interval:
    """Integrate y' = f(y) over a time interval of ``length`` from ``y`` with adaptive
    Dormand–Prince 5(4) steps, starting with step size ``h``. A step is accepted when the RMS of
    its error estimate, scaled by atol + rtol·max(|y|, |y_new|), is at most 1 (Hairer, Nørsett
    & Wanner, II.4); the step size then changes by 0.9·err^(−1/5), within [0.2, 5]."""
    evaluations = 1 if f_y is None else 0
    f_y = f(y) if f_y is None else f_y
    done, accepted, attempts = 0.0, 0, 0
    while length - done > 1e-12 * length:
        if attempts == max_steps:
            return Interval(y, f_y, h, accepted, evaluations, completed=False)
        attempts += 1
        step = min(h, length - done)
        y_new, f_new, error = _step(f, y, f_y, step)
        evaluations += 6
        scale = atol + rtol * torch.maximum(y.abs(), y_new.abs())
        err = float(torch.sqrt(torch.mean((error / scale).to(torch.float64) ** 2)))
        if not math.isfinite(err):
            h = step * MIN_FACTOR
            continue
        factor = min(MAX_FACTOR, max(MIN_FACTOR, SAFETY * err ** -0.2)) if err > 0 else MAX_FACTOR
        if err <= 1.0:
            clipped = step < h
            y, f_y, done, accepted = y_new, f_new, done + step, accepted + 1
            h = max(h, step * factor) if clipped else step * factor
        else:
            h = step * min(factor, 1.0)
    return Interval(y, f_y, h, accepted, evaluations, completed=True)


def _step(f: Callable[[Tensor], Tensor], y: Tensor, k1: Tensor, h: float) -> tuple[Tensor, Tensor, Tensor]:
    """One Dormand–Prince step: the 5th-order solution, f there, and the error estimate."""
    k = [k1]
    for row in _A[1:6]:
        k.append(f(y + h * sum(a * ki for a, ki in zip(row, k) if a != 0.0)))
    y_new = y + h * sum(b * ki for b, ki in zip(_A[6], k) if b != 0.0)
    k.append(f(y_new))
    error = h * sum(e * ki for e, ki in zip(_E, k) if e != 0.0)
    return y_new, k[-1], error


FLOW_COLUMNS = ["flow_loss", "flow_test_error", "flow_gen_error", "distance_to_flow", "flow_substeps",
                "flow_gradients", "flow_sharpness"]


class GradientFlow:
    """The gradient flow from GD's initial parameters, followed along GD's steps.

    Row ``step`` holds the flow at t = lr·step: ``flow_loss``, ``flow_test_error``,
    ``flow_gen_error``, ``distance_to_flow`` = ‖θ_GD − θ_flow‖, ``flow_substeps`` and
    ``flow_gradients`` (Runge-Kutta steps and gradient evaluations spent to get there from the
    previous row) and, on curvature steps, ``flow_sharpness``."""

    columns = FLOW_COLUMNS

    def __init__(self, *, rtol: float = 1e-6, atol: float = 1e-9, max_substeps: int = 10000,
                 tracker: Optional["SharpnessTracker"] = None) -> None:
        self.rtol, self.atol, self.max_substeps, self.tracker = rtol, atol, max_substeps, tracker
        self.y: Optional[Tensor] = None
        self.f_y: Optional[Tensor] = None
        self.step, self.h, self.counts, self.given_up = 0, 0.0, (0, 0), False

    def begin(self, *, loss_fn: Callable[[Sequence[Tensor]], Tensor], net: Callable[[Sequence[Tensor]], Any],
              params: Sequence[Tensor], problem: "Problem", lr: float, state: dict[str, Any]) -> None:
        """Start from ``params`` (step 0), or continue from ``state`` (a ``state_dict()``)."""
        self.loss_fn, self.net, self.problem, self.lr = loss_fn, net, problem, lr
        self.shapes = [p.shape for p in params]
        like = params[0]
        if state:
            self.load_state_dict(state, like)
        else:
            self.y = torch.cat([p.detach().reshape(-1) for p in params]).clone()
            self.h = lr

    def _params(self, y: Tensor) -> list[Tensor]:
        out, offset = [], 0
        for shape in self.shapes:
            n = math.prod(shape)
            out.append(y[offset: offset + n].view(shape))
            offset += n
        return out

    def velocity(self, y: Tensor) -> Tensor:
        """The flow's right-hand side, −∇L(y)."""
        with torch.enable_grad():
            leaf = y.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.loss_fn(self._params(leaf)), leaf, materialize_grads=True)
        return -grad

    def _advance_to(self, step: int) -> None:
        accepted = evaluations = 0
        while self.step < step and not self.given_up:
            part = dormand_prince(self.velocity, self.y, self.lr, rtol=self.rtol, atol=self.atol, h=self.h,
                                  f_y=self.f_y, max_steps=self.max_substeps)
            accepted += part.accepted
            evaluations += part.evaluations
            self.y, self.f_y, self.h = part.y, part.f_y, part.h
            self.step += 1
            if not part.completed:
                self.given_up = True
                log.warning("gradient flow: %d Runge-Kutta steps did not reach step %d (reference.max_substeps); "
                            "the flow columns stop here (raise reference.max_substeps or reference.rtol)",
                            self.max_substeps, self.step)
        self.counts = (accepted, evaluations)

    def row(self, step: int, params: Sequence[Tensor], *, measure: bool) -> dict[str, float]:
        """The flow's columns of row ``step``, next to GD's ``params`` there."""
        if self.step < step:
            self._advance_to(step)
        if self.given_up:
            return {}
        p = self.problem
        flow_params = self._params(self.y)
        net = self.net(flow_params)
        with torch.no_grad():
            gd = torch.cat([q.detach().reshape(-1) for q in params])
            values = [self.loss_fn(flow_params), mse(net(p.test_x), p.test_y), mse(net(p.gen_x), p.gen_y),
                      torch.linalg.vector_norm((gd - self.y).to(torch.float64))]
        numbers = torch.stack([v.detach().to(torch.float64) for v in values]).tolist()
        row = dict(zip(FLOW_COLUMNS[:4], numbers))
        row["flow_substeps"], row["flow_gradients"] = self.counts
        if len(p.gen_x) == 0:  # as for GD: nothing outside the training box to measure
            del row["flow_gen_error"]
        if measure and self.tracker is not None:
            result = self.tracker.measure(self.loss_fn, [q.detach().requires_grad_(True) for q in flow_params], step=step)
            row["flow_sharpness"] = float(result.eigenvalues[0])
        return row

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and numbers: what a resumed run needs to continue the flow exactly."""
        return {
            "y": self.y.detach().cpu().clone(), "f_y": None if self.f_y is None else self.f_y.detach().cpu().clone(),
            "step": self.step, "h": self.h, "counts": list(self.counts), "given_up": self.given_up,
            "tracker": self.tracker.state_dict() if self.tracker is not None else {},
        }

    def load_state_dict(self, state: dict[str, Any], like: Tensor) -> None:
        self.y = state["y"].to(like)
        self.f_y = None if state["f_y"] is None else state["f_y"].to(like)
        self.step, self.h, self.given_up = int(state["step"]), float(state["h"]), bool(state["given_up"])
        self.counts = tuple(int(c) for c in state["counts"])
        if state["tracker"] and self.tracker is not None:
            self.tracker.load_state_dict(state["tracker"])

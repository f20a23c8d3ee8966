"""The gradient-descent loop: theta <- theta - lr * grad L(theta), full batch, no optimizer
object (an update rule of neuroscope.optimizers may add a momentum term; a reference such as
the gradient flow of neuroscope.flow may be followed alongside, in the same rows).

Row ``step = t`` of the metrics describes the parameters theta_t *before* update t: the
objective and its terms, test and generalization error (MSE; and relative L2, ``rel_l2`` and
``rel_l2_gen``), and (every ``curvature.every``
steps) the top Hessian eigenvalues at theta_t and ``projection`` = |(theta_{t+1} - theta_t) . v_max|.
The last row, ``step = steps``, is the final state. A non-finite loss (or one above
``diverge_above``) ends the run as ``diverged`` with everything recorded so far kept.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call
from tqdm.auto import tqdm

from . import rundir as hist
from .data import Problem, to_numpy
from .losses import Objective, mse
from .optimizers import GradientDescent, UpdateRule
from .rundir import DIVERGED, FINISHED, INTERRUPTED

if TYPE_CHECKING:
    from .curvature import CurvatureSurvey, SharpnessTracker
    from .flow import GradientFlow

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Everything needed to continue a run exactly: saved as ``checkpoint.pt``."""

    step: int = 0  # the next step to record
    metrics: dict[str, list[float]] = field(default_factory=dict)
    frame_steps: list[int] = field(default_factory=list)
    frame_pred: list[np.ndarray] = field(default_factory=list)
    tracker: dict[str, Any] = field(default_factory=dict)
    survey: dict[str, Any] = field(default_factory=dict)  # CurvatureSurvey.state_dict(), when there is one
    optimizer: dict[str, Any] = field(default_factory=dict)  # the update rule's state (a velocity)
    reference: dict[str, Any] = field(default_factory=dict)  # the reference run's state (the flow)
    nonfinite: dict[str, int] = field(default_factory=dict)  # column -> count of NaN/inf recorded
    train_seconds: float = 0.0


def metric_columns(term_names: Sequence[str], k: int) -> list[str]:
    return (
        ["step", "loss"]
        + [f"loss_{t}" for t in term_names]
        + ["test_error", "gen_error", "rel_l2", "rel_l2_gen", "grad_norm", "sharpness"]
        + [f"lambda_{i}" for i in range(2, k + 1)]
        + ["projection", "projection_err", "hvps", "eig_residual", "eig_converged"]
    )


def projection_error_bound(update_norm: float, residual: float, gap: float) -> float:
    """How far |Δθ·v| may be from |Δθ·v*| (v* the true top eigenvector) for a Ritz vector v with
    residual ‖Hv − λv‖ = ``residual`` and spectral gap ``gap`` = λ₁ − λ₂: the sin θ theorem
    gives sin∠(v, v*) ≤ residual / gap, so ‖v − v*‖ ≤ √2 · residual / gap (never more than
    √2 apart for unit vectors of the same sign), and |Δθ·(v − v*)| ≤ ‖Δθ‖ · ‖v − v*‖."""
    if not gap > 0:
        return math.sqrt(2.0) * update_norm
    return update_norm * min(math.sqrt(2.0), math.sqrt(2.0) * residual / gap)


def frame_schedule(steps: int, frames: int) -> frozenset[int]:
    """``frames`` steps evenly spaced over [0, steps], both ends included."""
    return frozenset(int(s) for s in np.unique(np.round(np.linspace(0, steps, max(frames, 2)))))


@dataclass(frozen=True)
class TrainSettings:
    """What the loop needs of a run's config."""

    lr: float
    steps: int
    frame_steps: frozenset[int] = frozenset()  # steps whose fit on the plot grid is kept
    curvature_every: int = 0  # measure the sharpness every N steps; 0 = never
    checkpoint_every: int = 0  # hand the state to ``on_checkpoint`` every N steps; 0 = never
    diverge_above: float = 1e10


@dataclass
class Trainer:
    """Descends ``objective`` with ``model``'s parameters; ``tracker`` (a SharpnessTracker,
    given when ``settings.curvature_every > 0``) measures the top eigenpairs, and ``survey``
    (a CurvatureSurvey, when asked for) per-term sharpness, trace and density on its own schedule."""

    model: nn.Module
    problem: Problem
    objective: Objective
    writer: hist.MetricsWriter
    settings: TrainSettings
    tracker: Optional["SharpnessTracker"] = None
    survey: Optional["CurvatureSurvey"] = None
    should_stop: Callable[[], bool] = lambda: False
    on_frame: Optional[Callable[[hist.History], None]] = None
    on_checkpoint: Optional[Callable[[TrainState], None]] = None
    progress: bool = True
    rule: UpdateRule = field(default_factory=GradientDescent)  # the update: Δθ = −lr·∇L + its momentum term
    reference: Optional["GradientFlow"] = None  # followed beside GD, recorded in the same rows

    def __post_init__(self) -> None:
        self.columns = self.writer.columns
        self.names = [n for n, _ in self.model.named_parameters()]
        self.params = [p for _, p in self.model.named_parameters()]

    # The objective as a pure function of the parameter tensors (what curvature differentiates).
    def net(self, params: Sequence[Tensor]) -> Callable[[Tensor], Tensor]:
        names = self.names
        return lambda x: functional_call(self.model, dict(zip(names, params)), (x,))

    def loss_fn(self, params: Sequence[Tensor]) -> Tensor:
        return self.objective(self.net(params), params)[0]

    def terms_fn(self, params: Sequence[Tensor]) -> dict[str, Tensor]:
        return self.objective(self.net(params), params)[1]

    def residuals_fn(self, params: Sequence[Tensor]) -> dict[str, tuple[Tensor, float]]:
        return self.objective.residuals(self.net(params), params)

    def spectrum(self) -> Optional[dict[str, np.ndarray]]:
        """The spectral densities measured so far, with lr, for spectrum.npz (None when off)."""
        arrays = self.survey.spectrum() if self.survey is not None else None
        return None if arrays is None else {**arrays, "lr": np.float64(self.settings.lr)}

    def run(self, state: TrainState, geometry: hist.Geometry) -> tuple[str, TrainState]:
        """Record rows ``state.step`` to ``settings.steps`` (updating after each but the last),
        unless the loss diverges or ``should_stop`` says so first."""
        s = self.settings
        if state.tracker and self.tracker is not None:
            self.tracker.load_state_dict(state.tracker)
        if state.survey and self.survey is not None:
            self.survey.load_state_dict(state.survey)
        self.rule.load_state_dict(state.optimizer)
        if self.reference is not None:
            self.reference.begin(loss_fn=self.loss_fn, net=self.net, params=self.params, problem=self.problem,
                                 lr=s.lr, state=state.reference)
        status = FINISHED
        started = time.perf_counter()
        bar = tqdm(total=s.steps + 1, initial=state.step, desc="training", unit="step", dynamic_ncols=True,
                   mininterval=0.25, disable=not self.progress)
        try:
            for step in range(state.step, s.steps + 1):
                loss, terms = self.objective(self.model, self.params)  # the same function as loss_fn, minus functional_call's overhead
                value = loss.item()
                if not math.isfinite(value) or value > s.diverge_above:
                    self._diverged(state, step, loss, terms)
                    status = DIVERGED
                    break
                row, flat_grad, momentum = self._row(step, loss, terms)
                del loss, terms
                if step in s.frame_steps:
                    self._keep_frame(state, step)
                self._record(state, row)
                if step in s.frame_steps and self.on_frame is not None:
                    self.on_frame(self.history(state, geometry))
                if step < s.steps:
                    self._update(flat_grad, momentum)
                if s.checkpoint_every and self.on_checkpoint is not None and step < s.steps and (step + 1) % s.checkpoint_every == 0:
                    self._keep_states(state)
                    self.on_checkpoint(state)  # theta_{step+1}, next row step+1
                bar.update(1)
                if step % 10 == 0:
                    bar.set_postfix(loss=f"{row['loss']:.3g}", sharpness=f"{_last(state, 'sharpness'):.3g}", refresh=False)
                if step < s.steps and self.should_stop():
                    status = INTERRUPTED
                    log.warning("interrupted after step %d of %d: saving what was recorded", step, s.steps)
                    break
        finally:
            bar.close()
            self.writer.flush()
            state.train_seconds += time.perf_counter() - started
            self._keep_states(state)
        return status, state

    def _keep_states(self, state: TrainState) -> None:
        """The trackers', the update rule's and the reference's states, for a checkpoint."""
        state.tracker = self.tracker.state_dict() if self.tracker is not None else {}
        state.survey = self.survey.state_dict() if self.survey is not None else {}
        state.optimizer = self.rule.state_dict()
        state.reference = self.reference.state_dict() if self.reference is not None else {}

    def _row(self, step: int, loss: Tensor, terms: dict[str, Tensor]) -> tuple[dict[str, float], Tensor, Optional[Tensor]]:
        """The metrics row of theta_step, the flat gradient of the loss there and the momentum
        term of the update from it (None for plain GD and for the last row, which has no update)."""
        p = self.problem
        measure = self.tracker is not None and step % self.settings.curvature_every == 0
        # materialize: a parameter the objective ignores (e.g. the last bias under a pure
        # u''=f residual) gets a zero gradient, not None
        grads = torch.autograd.grad(loss, self.params, create_graph=measure, materialize_grads=True)
        flat_grad = torch.cat([g.detach().reshape(-1) for g in grads])
        with torch.no_grad():
            # the mean of an empty tensor is NaN: no gen_x, no generalization error
            test, gen = _errors(self.model(p.test_x), p.test_y), _errors(self.model(p.gen_x), p.gen_y)
            values = [loss.detach(), *(v.detach() for v in terms.values()), test[0], gen[0], test[1], gen[1], _norm(flat_grad)]
        numbers = torch.stack([v.to(torch.float64) for v in values]).tolist()
        row: dict[str, float] = {"step": step, "loss": numbers[0]}
        row.update({f"loss_{k}": v for k, v in zip(terms, numbers[1:])})
        row["test_error"], row["gen_error"], row["rel_l2"], row["rel_l2_gen"], row["grad_norm"] = numbers[-5:]
        if len(p.gen_x) == 0:  # the test box is the training box: nothing to generalize to
            del row["gen_error"], row["rel_l2_gen"]
        momentum = self.rule.step(flat_grad, self.settings.lr) if step < self.settings.steps else None
        if measure:
            row.update(self._measure(grads, flat_grad, momentum, step=step, last=step == self.settings.steps))
        if self.survey is not None and self.survey.due(step):
            row.update(self.survey.measure(step, loss_fn=self.loss_fn, terms_fn=self.terms_fn, params=self.params,
                                           residuals_fn=self.residuals_fn))
        if self.reference is not None:
            row.update(self.reference.row(step, self.params, measure=measure))
        return row, flat_grad, momentum

    def _update(self, flat_grad: Tensor, momentum: Optional[Tensor]) -> None:
        """theta <- theta - lr * grad (+ the rule's momentum term), in place."""
        lr = self.settings.lr
        with torch.no_grad():
            offset = 0
            for q in self.params:
                n = q.numel()
                q.sub_(lr * flat_grad[offset : offset + n].view_as(q))
                if momentum is not None:
                    q.add_(momentum[offset : offset + n].view_as(q))
                offset += n

    def _diverged(self, state: TrainState, step: int, loss: Tensor, terms: dict[str, Tensor]) -> None:
        """Record the diverging row, and the fit there however wild."""
        row = {"step": step, "loss": loss.item(), **{f"loss_{k}": v.item() for k, v in terms.items()}}
        self._record(state, row)
        if not state.frame_steps or state.frame_steps[-1] != step:
            self._keep_frame(state, step)
        log.warning("loss = %s at step %d: the run diverged (lr=%g); stopping and keeping what was recorded",
                    row["loss"], step, self.settings.lr)

    def _measure(self, grads: Sequence[Tensor], flat_grad: Tensor, momentum: Optional[Tensor], step: int,
                 last: bool) -> dict[str, float]:
        result = self.tracker.measure(self.loss_fn, self.params, grads, step=step)
        eig = result.eigenvalues.to(torch.float64).tolist()
        row: dict[str, float] = {"sharpness": eig[0]}
        row.update({f"lambda_{i}": v for i, v in enumerate(eig[1:], start=2)})
        v_max = result.eigenvectors[:, 0].to(torch.float64)
        if not last:  # Delta theta = -lr * grad + momentum; the final row has no update to project
            update = self.settings.lr * flat_grad.to(torch.float64)
            if momentum is not None:
                update = update - momentum.to(torch.float64)
            row["projection"] = abs(float((update * v_max).sum()))
            if len(eig) > 1:  # the bound needs the gap to lambda_2 (curvature.k >= 2)
                update_norm = float(torch.linalg.vector_norm(update))
                row["projection_err"] = projection_error_bound(update_norm, float(result.residuals[0]), eig[0] - eig[1])
        row["hvps"] = result.hvps
        row["eig_residual"] = float(result.residuals.max())
        row["eig_converged"] = bool(result.converged)
        if result.bottom is not None:
            from .curvature import bottom_columns

            row.update(bottom_columns(result))
        return row

    def _keep_frame(self, state: TrainState, step: int) -> None:
        with torch.no_grad():
            state.frame_steps.append(step)
            state.frame_pred.append(to_numpy(self.model(self.problem.plot_x)))

    def _record(self, state: TrainState, row: dict[str, float]) -> None:
        """Keep a row (a missing key means not measured) and stream it to metrics.csv."""
        for c in self.columns:
            value = float(row.get(c, math.nan))
            state.metrics.setdefault(c, []).append(value)
            if c in row and not math.isfinite(value):
                if c not in state.nonfinite:
                    log.warning("non-finite %s = %s at step %d", c, value, row["step"])
                state.nonfinite[c] = state.nonfinite.get(c, 0) + 1
        self.writer.write(row)
        state.step = int(row["step"]) + 1

    def history(self, state: TrainState, geometry: hist.Geometry) -> hist.History:
        n_pred = len(geometry.plot_target)
        return hist.History(
            metrics={c: np.asarray(state.metrics.get(c, []), dtype=np.float64) for c in self.columns},
            frame_steps=np.asarray(state.frame_steps, dtype=np.int64),
            frame_pred=np.asarray(state.frame_pred, dtype=np.float64).reshape(len(state.frame_pred), n_pred),
            geometry=geometry,
        )


def _errors(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """The MSE and the relative L2 error ||pred - target||_2 / ||target||_2 (in float64) of one
    forward pass; both NaN for no points."""
    diff = pred.to(torch.float64) - target.to(torch.float64)
    return mse(pred, target), torch.sqrt((diff * diff).sum() / (target.to(torch.float64) ** 2).sum())


def _norm(v: Tensor) -> Tensor:
    return torch.sqrt((v.to(torch.float64) ** 2).sum())


def _last(state: TrainState, column: str) -> float:
    for v in reversed(state.metrics.get(column, [])):
        if not math.isnan(v):
            return v
    return math.nan

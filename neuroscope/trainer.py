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
from .model import SoloEnsemble
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
    """What the loop needs of a run's config; ``lr`` and ``diverge_above`` may be the members'
    values (one per member) for an ensemble."""

    lr: float | Sequence[float]
    steps: int
    frame_steps: frozenset[int] | Sequence[frozenset[int]] = frozenset()  # steps whose fit on the plot grid is kept (per member)
    curvature_every: int = 0  # measure the sharpness every N steps; 0 = never
    checkpoint_every: int = 0  # hand the state to ``on_checkpoint`` every N steps; 0 = never
    diverge_above: float | Sequence[float] = 1e10
    flush_every: int = 1  # read a step's numbers back from the device every N steps (1: every step; see Trainer)

    def per_member(self, name: str, members: int) -> list[float]:
        value = getattr(self, name)
        values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)] * members
        if len(values) != members:
            raise ValueError(f"TrainSettings.{name} has {len(values)} values for {members} members")
        return values


@dataclass
class Trainer:
    """Descends ``objective`` with ``model``'s parameters, an ensemble of E members
    (neuroscope.model: weights stacked along a leading member dimension, E = 1 for one run):
    each member has its own lr, metrics rows (``writer``: one MetricsWriter per member, or one
    for an ensemble of one), TrainState and divergence. ``tracker`` (given when
    ``settings.curvature_every > 0``) measures every member's top eigenpairs; ``survey`` (a
    CurvatureSurvey) and ``reference`` are one run's (E = 1).

    With ``settings.flush_every`` = N > 1 (CUDA: no host sync per step) a step that needs
    nothing on the host (no curvature, frame, checkpoint, survey, reference or live view, not
    the last) keeps its numbers on the device and freezes a diverging member there; every N
    steps, and before any other step, the kept numbers are read back at once and recorded
    exactly as step by step: the same rows, the same divergence step."""

    model: nn.Module
    problem: Problem
    objective: Objective
    writer: hist.MetricsWriter | Sequence[hist.MetricsWriter]
    settings: TrainSettings
    tracker: Optional["SharpnessTracker"] = None
    survey: Optional["CurvatureSurvey"] = None
    should_stop: Callable[[], bool] = lambda: False
    on_frame: Optional[Callable[[hist.History], None]] = None
    on_checkpoint: Optional[Callable[[list[Optional[TrainState]]], None]] = None  # each member's state (None: frozen)
    progress: bool = True
    rule: UpdateRule = field(default_factory=GradientDescent)  # the update: Δθ = −lr·∇L + its momentum term
    reference: Optional["GradientFlow"] = None  # followed beside GD, recorded in the same rows

    def __post_init__(self) -> None:
        self.writers = [self.writer] if isinstance(self.writer, hist.MetricsWriter) else list(self.writer)
        self.columns = self.writers[0].columns
        if not hasattr(self.model, "members"):  # a plain network: an ensemble of one
            self.model = SoloEnsemble(self.model)
        self.members = self.model.members
        self.names = [n for n, _ in self.model.named_parameters()]
        self.params = [p for _, p in self.model.named_parameters()]
        self.lrs = self.settings.per_member("lr", self.members)
        self.limits = self.settings.per_member("diverge_above", self.members)
        frames = self.settings.frame_steps
        self.frames = list(frames) if isinstance(frames, (list, tuple)) else [frames] * self.members
        self.any_frame = frozenset().union(*self.frames)
        like = self.params[0]
        self._lr = torch.tensor(self.lrs, dtype=like.dtype, device=like.device)
        stacked = not isinstance(self.model, SoloEnsemble)  # a custom network's parameters have no member dimension
        self._lr_views = [self._lr.view(-1, *[1] * (q.dim() - 1)) if stacked else self._lr.reshape(()) for q in self.params]
        self._sizes = [q[0].numel() if stacked else q.numel() for q in self.params]  # per member
        p = self.problem
        self._eval_x = torch.cat([p.test_x, p.gen_x])  # one forward for the test and generalization errors
        self._eval_y = [(p.test_y, _square_sum(p.test_y)), (p.gen_y, _square_sum(p.gen_y))]
        self._limits = torch.tensor(self.limits, dtype=torch.float64, device=like.device)
        self._pending: list[tuple[int, Tensor, dict[str, Any]]] = []  # deferred steps: (step, numbers, rule state before)
        self._term_names: list[str] = []

    # The objective as a pure function of the parameter tensors (what curvature differentiates):
    # the sum of the members' losses, whose Hessian is block-diagonal, one block per member.
    def net(self, params: Sequence[Tensor]) -> Callable[[Tensor], Tensor]:
        names = self.names
        return lambda x: functional_call(self.model, dict(zip(names, params)), (x,))

    def loss_fn(self, params: Sequence[Tensor]) -> Tensor:
        return self.objective(self.net(params), params)[0].sum()

    def terms_fn(self, params: Sequence[Tensor]) -> dict[str, Tensor]:
        return {k: v.sum() for k, v in self.objective(self.net(params), params)[1].items()}

    def residuals_fn(self, params: Sequence[Tensor]) -> dict[str, tuple[Tensor, float]]:
        return self.objective.residuals(self.net(params), params)

    def spectrum(self) -> Optional[dict[str, np.ndarray]]:
        """The spectral densities measured so far, with lr, for spectrum.npz (None when off)."""
        arrays = self.survey.spectrum() if self.survey is not None else None
        return None if arrays is None else {**arrays, "lr": np.float64(self.lrs[0])}

    def run(self, state: TrainState, geometry: hist.Geometry) -> tuple[str, TrainState]:
        """One run (an ensemble of one): ``run_members`` with its one state."""
        statuses, states = self.run_members([state], [geometry])
        return statuses[0], states[0]

    def run_members(self, states: list[TrainState], geometries: Sequence[Optional[hist.Geometry]]) -> tuple[list[str], list[TrainState]]:
        """Record rows ``state.step`` to ``settings.steps`` for every member (updating after each
        but the last); a member whose loss diverges is frozen there, and ``should_stop`` stops all."""
        s = self.settings
        self._load_states(states)
        first = states[0].step
        statuses = [FINISHED] * self.members
        self.active = [True] * self.members
        started = time.perf_counter()
        bar = tqdm(total=s.steps + 1, initial=first, desc="training", unit="step", dynamic_ncols=True,
                   mininterval=0.25, disable=not self.progress)
        self._active = torch.ones(self.members, dtype=torch.bool, device=self._lr.device)
        try:
            for step in range(first, s.steps + 1):
                if self._deferrable(step):
                    self._update(self._step_deferred(step), self.rule.step(self._flat, self._lr.view(-1, 1)), self._active)
                    bar.update(1)
                    stop = self.should_stop()
                    if stop or len(self._pending) >= s.flush_every:
                        self._flush(states, statuses)
                    if not any(self.active):
                        break
                    if stop:
                        statuses = [INTERRUPTED if a else st for a, st in zip(self.active, statuses)]
                        log.warning("interrupted after step %d of %d: saving what was recorded", step, s.steps)
                        break
                    continue
                self._flush(states, statuses)
                if not any(self.active):
                    break
                rows, grads, momentum = self._step_rows(step, states, statuses)
                if not any(self.active):
                    break
                if self.on_frame is not None and step in self.frames[0]:
                    self.on_frame(self.history(states[0], geometries[0]))
                if step < s.steps:
                    self._update(grads, momentum)
                del grads
                if s.checkpoint_every and self.on_checkpoint is not None and step < s.steps and (step + 1) % s.checkpoint_every == 0:
                    self._keep_states(states)
                    self.on_checkpoint([st if a else None for st, a in zip(states, self.active)])  # theta_{step+1}, next row step+1
                bar.update(1)
                if step % 10 == 0 and rows:
                    bar.set_postfix(loss=f"{rows[0]['loss']:.3g}", sharpness=f"{_last(states[0], 'sharpness'):.3g}", refresh=False)
                if step < s.steps and self.should_stop():
                    statuses = [INTERRUPTED if a else st for a, st in zip(self.active, statuses)]
                    log.warning("interrupted after step %d of %d: saving what was recorded", step, s.steps)
                    break
        finally:
            bar.close()
            if self._pending:  # an error mid-window: the rows computed before it are still recorded
                try:
                    self._flush(states, statuses)
                except Exception as e:
                    log.warning("the last %d steps' numbers could not be read back (%s: %s)", len(self._pending), type(e).__name__, e)
                    self._pending.clear()
            for w in self.writers:
                w.flush()
            elapsed = time.perf_counter() - started
            for st in states:
                st.train_seconds += elapsed
            self._keep_states(states)
        return statuses, states

    def _step_rows(self, step: int, states: list[TrainState], statuses: list[str]) -> tuple[list[dict], Any, Optional[Tensor]]:
        """Measure theta_step, record each active member's row (a diverging member's last one,
        freezing it) and return the rows, the gradients and the momentum term of the update."""
        s = self.settings
        measure = self.tracker is not None and step % s.curvature_every == 0
        grads, numbers = self._numbers(create_graph=measure)
        rows = self._rows(step, numbers.tolist(), states, statuses)
        if not rows:
            return [], grads, None
        momentum = self.rule.step(self._flat, self._lr.view(-1, 1)) if step < s.steps else None
        self._extra_columns(rows, step, grads, self._flat, momentum, measure)
        if step in self.any_frame:
            self._keep_frames({e: states[e] for e in rows if step in self.frames[e]}, step)
        for e, row in rows.items():
            self._record(states[e], e, row)
        return list(rows.values()), grads, momentum

    def _numbers(self, create_graph: bool = False) -> tuple[Sequence[Tensor], Tensor]:
        """The gradients at theta and the row numbers of every member, (E, columns) in float64 on
        the device: loss, terms, test and generalization errors and relative L2s, gradient norm;
        the flat gradients (E, P) kept in ``self._flat``."""
        losses, terms = self.objective(self.model, self.params)  # loss_fn's function, minus functional_call's overhead
        self._term_names = list(terms)
        # materialize: a parameter the objective ignores (e.g. the last bias under a pure
        # u''=f residual) gets a zero gradient, not None
        grads = torch.autograd.grad(losses.sum(), self.params, create_graph=create_graph, materialize_grads=True)
        p = self.problem
        with torch.no_grad():
            self._flat = torch.cat([g.detach().reshape(self.members, -1) for g in grads], dim=1)
            pred = self.model(self._eval_x)
            n_test = len(p.test_x)
            (test, gen) = (_errors(part, y, ssq) for part, (y, ssq) in zip((pred[:, :n_test], pred[:, n_test:]), self._eval_y))
            values = [losses, *terms.values(), test[0], gen[0], test[1], gen[1], _norm(self._flat)]
            numbers = torch.stack([v.detach().to(torch.float64).reshape(self.members) for v in values], dim=1)
        return grads, numbers

    def _rows(self, step: int, numbers: list[list[float]], states: list[TrainState], statuses: list[str]) -> dict[int, dict[str, float]]:
        """The rows of the members still training at ``step``; a member whose loss is not finite
        or above its limit has its last row recorded here and is frozen."""
        names = self._term_names
        rows: dict[int, dict[str, float]] = {}
        for e in range(self.members):
            if not self.active[e]:
                continue
            if not math.isfinite(numbers[e][0]) or numbers[e][0] > self.limits[e]:
                self._diverged(states[e], e, step, numbers[e][: 1 + len(names)], names)
                self.active[e], statuses[e] = False, DIVERGED
            else:
                rows[e] = self._row(step, numbers[e], names)
        return rows

    def _deferrable(self, step: int) -> bool:
        """Whether ``step`` may keep its numbers on the device (``flush_every``)."""
        s = self.settings
        return (s.flush_every > 1 and step < s.steps and step not in self.any_frame and self.survey is None
                and self.reference is None and self.on_frame is None
                and not (self.tracker is not None and step % s.curvature_every == 0)
                and not (s.checkpoint_every and (step + 1) % s.checkpoint_every == 0))

    def _step_deferred(self, step: int) -> Sequence[Tensor]:
        """A step whose numbers stay on the device: a member whose loss diverges is frozen by
        ``self._active`` (the update skips it), and the host learns of it at the next flush."""
        grads, numbers = self._numbers()
        loss = numbers[:, 0]
        self._active &= torch.isfinite(loss) & ~(loss > self._limits)
        self._pending.append((step, numbers, dict(vars(self.rule))))  # the rule's state before its step
        return grads

    def _flush(self, states: list[TrainState], statuses: list[str]) -> None:
        """Record the deferred steps' rows, read back in one transfer, as step by step; where every
        member had diverged, the update rule goes back to its state at that step."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        for (step, _, rule_before), numbers in zip(pending, torch.stack([n for _, n, _ in pending]).tolist()):
            for e, row in self._rows(step, numbers, states, statuses).items():
                self._record(states[e], e, row)
            if not any(self.active):  # the loop would have stopped here, before this step's update
                vars(self.rule).update(rule_before)
                break
        self._active = torch.tensor(self.active, dtype=torch.bool, device=self._lr.device)

    def _row(self, step: int, numbers: list[float], term_names: list[str]) -> dict[str, float]:
        row: dict[str, float] = {"step": step, "loss": numbers[0]}
        row.update({f"loss_{k}": v for k, v in zip(term_names, numbers[1:])})
        row["test_error"], row["gen_error"], row["rel_l2"], row["rel_l2_gen"], row["grad_norm"] = numbers[-5:]
        if len(self.problem.gen_x) == 0:  # the test box is the training box: nothing to generalize to
            del row["gen_error"], row["rel_l2_gen"]
        return row

    def _extra_columns(self, rows: dict[int, dict[str, float]], step: int, grads: Sequence[Tensor], flat: Tensor,
                       momentum: Optional[Tensor], measure: bool) -> None:
        """The curvature columns (every member's, from one batched tracker), the survey's and the reference's."""
        if measure:
            active = [e in rows for e in range(self.members)]
            results = self.tracker.measure_members(self.loss_fn, self.params, grads, step=step, active=active)
            for e, row in rows.items():
                row.update(self._measure(results[e], e, flat[e], None if momentum is None else momentum[e],
                                         last=step == self.settings.steps))
        if self.survey is not None and self.survey.due(step):
            rows[0].update(self.survey.measure(step, loss_fn=self.loss_fn, terms_fn=self.terms_fn, params=self.params,
                                               residuals_fn=self.residuals_fn))
        if self.reference is not None:
            rows[0].update(self.reference.row(step, self.params, measure=measure))

    def _load_states(self, states: list[TrainState]) -> None:
        """Continue the trackers, the update rule and the reference from the members' states."""
        for e, state in enumerate(states):
            if state.tracker and self.tracker is not None:
                self.tracker.load_member_state_dict(e, state.tracker)
        if states[0].survey and self.survey is not None:
            self.survey.load_state_dict(states[0].survey)
        self.rule.load_state_dict(stack_states([st.optimizer for st in states]))
        if self.reference is not None:
            self.reference.begin(loss_fn=self.loss_fn, net=self.net, params=self.params, problem=self.problem,
                                 lr=self.lrs[0], state=states[0].reference)

    def _keep_states(self, states: list[TrainState]) -> None:
        """The trackers', the update rule's and the reference's states, for a checkpoint."""
        rule = self.rule.state_dict()
        for e, state in enumerate(states):
            state.tracker = self.tracker.member_state_dict(e) if self.tracker is not None else {}
            state.optimizer = member_state(rule, e)
        states[0].survey = self.survey.state_dict() if self.survey is not None else {}
        states[0].reference = self.reference.state_dict() if self.reference is not None else {}

    def _update(self, grads: Sequence[Tensor], momentum: Optional[Tensor], keep: Optional[Tensor] = None) -> None:
        """theta <- theta - lr * grad (+ the rule's momentum term), in place, one op per parameter;
        a frozen (diverged) member keeps its parameters (``keep``: the members that move, on the
        device; default: ``self.active``)."""
        parts = [None] * len(self.params) if momentum is None else torch.split(momentum, self._sizes, dim=1)
        frozen = keep is not None or not all(self.active)
        if keep is None and frozen:
            keep = torch.tensor(self.active, device=self._lr.device)
        with torch.no_grad():
            for q, g, lr, m in zip(self.params, grads, self._lr_views, parts):
                if not frozen:
                    q.sub_(lr * g)
                    if m is not None:
                        q.add_(m.view_as(q))
                    continue
                new = q - lr * g if m is None else q - lr * g + m.view_as(q)
                q.copy_(torch.where(keep.view(lr.shape), new, q))

    def _diverged(self, state: TrainState, e: int, step: int, numbers: list[float], term_names: list[str]) -> None:
        """Record member ``e``'s diverging row, and its fit there however wild."""
        row = {"step": step, "loss": numbers[0], **{f"loss_{k}": v for k, v in zip(term_names, numbers[1:])}}
        self._record(state, e, row)
        if not state.frame_steps or state.frame_steps[-1] != step:
            self._keep_frames({e: state}, step)
        log.warning("loss = %s at step %d: the run diverged (lr=%g); stopping and keeping what was recorded",
                    row["loss"], step, self.lrs[e])

    def _measure(self, result, e: int, flat_grad: Tensor, momentum: Optional[Tensor], last: bool) -> dict[str, float]:
        eig = result.eigenvalues.to(torch.float64).tolist()
        row: dict[str, float] = {"sharpness": eig[0]}
        row.update({f"lambda_{i}": v for i, v in enumerate(eig[1:], start=2)})
        v_max = result.eigenvectors[:, 0].to(torch.float64)
        if not last:  # Delta theta = -lr * grad + momentum; the final row has no update to project
            update = self.lrs[e] * flat_grad.to(torch.float64)
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

    def _keep_frames(self, states: dict[int, TrainState], step: int) -> None:
        """The fit on the plot grid of the members ``states`` names (one forward for all), kept in their states."""
        if not states:
            return
        with torch.no_grad():
            pred = to_numpy(self.model(self.problem.plot_x))
        for e, state in states.items():
            state.frame_steps.append(step)
            state.frame_pred.append(pred[e])

    def _record(self, state: TrainState, e: int, row: dict[str, float]) -> None:
        """Keep a row of member ``e`` (a missing key means not measured) and stream it to its
        metrics.csv. (Once per member and step: the row's values are kept and formatted in one
        pass, ``hist.format_cell`` inlined for the floats.)"""
        metrics, cells = state.metrics, []
        for c in self.columns:
            value = row.get(c)
            if value is None:
                number, cell = math.nan, ""
            elif value.__class__ is float:
                number, cell = value, repr(value)
            else:
                number, cell = float(value), hist.format_cell(value)
            column = metrics.get(c)
            if column is None:
                column = metrics[c] = []
            column.append(number)
            cells.append(cell)
            if number - number != 0.0 and value is not None:  # NaN or infinite, recorded as measured
                if c not in state.nonfinite:
                    log.warning("non-finite %s = %s at step %d", c, number, row["step"])
                state.nonfinite[c] = state.nonfinite.get(c, 0) + 1
        self.writers[e].write_cells(cells)
        state.step = int(row["step"]) + 1

    def history(self, state: TrainState, geometry: hist.Geometry) -> hist.History:
        n_pred = len(geometry.plot_target)
        return hist.History(
            metrics={c: np.asarray(state.metrics.get(c, []), dtype=np.float64) for c in self.columns},
            frame_steps=np.asarray(state.frame_steps, dtype=np.int64),
            frame_pred=np.asarray(state.frame_pred, dtype=np.float64).reshape(len(state.frame_pred), n_pred),
            geometry=geometry,
        )


def member_state(state: dict[str, Any], e: int) -> dict[str, Any]:
    """Member ``e``'s part of an ensemble's state dict (its row of every stacked tensor): the
    format a separate run saves."""
    return {k: v[e].clone() if isinstance(v, Tensor) else v for k, v in state.items()}


def stack_states(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The members' state dicts as one ensemble's: tensors stacked, the rest the first member's
    (a value None in any member: None)."""
    out: dict[str, Any] = {}
    for k, v in states[0].items():
        values = [s.get(k) for s in states]
        if any(x is None for x in values):
            out[k] = None
        else:
            out[k] = torch.stack(values) if isinstance(v, Tensor) else v
    return out


def _square_sum(y: Tensor) -> Tensor:
    return (y.to(torch.float64) ** 2).sum()


def _errors(pred: Tensor, target: Tensor, target_square_sum: Tensor) -> tuple[Tensor, Tensor]:
    """Per member (pred (E, n)): the MSE and the relative L2 error ||pred - target||_2 /
    ||target||_2 (in float64, ``target_square_sum`` = ||target||²); both NaN for no points."""
    diff = pred.to(torch.float64) - target.to(torch.float64)
    return mse(pred, target, dim=-1), torch.sqrt((diff * diff).sum(dim=-1) / target_square_sum)


def _norm(v: Tensor) -> Tensor:
    """Each member's Euclidean norm of v (E, P), in float64."""
    return torch.sqrt((v.to(torch.float64) ** 2).sum(dim=-1))


def _last(state: TrainState, column: str) -> float:
    for v in reversed(state.metrics.get(column, [])):
        if not math.isnan(v):
            return v
    return math.nan

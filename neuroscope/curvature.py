"""Sharpness, the top eigenvalues of the Hessian of the training objective, measured matrix-free.

One idea, a symmetric operator ``v -> H v`` over the flat parameter vector (three ways to
compute the product), and plain eigen-solvers over it (Lanczos, PyHessian's power iteration,
dense ``eigh``). ``SharpnessTracker`` is what the trainer calls every few steps: it warm-starts
Lanczos from the previous measurement and picks the cheapest correct Hessian-vector product.

Conventions
-----------
* Flat vector = ``torch.cat([p.reshape(-1) for p in params])``, parameters in a fixed order.
* Eigenvalues come largest ALGEBRAIC first: a large negative eigenvalue is never sharpness.
  (Power iteration is the exception by nature: it finds the largest-magnitude eigenvalue.)
* Solvers keep their Krylov vectors and do every reduction in float64, whatever the dtype of
  the network; the Hessian-vector products themselves run in the parameters' dtype.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "EigenResult", "HessianOperator", "HvpCosts", "Operator", "SharpnessTracker", "dense_eigenpairs",
    "exact_hessian", "flatten", "gradient", "lanczos", "measure_hvp_costs", "power_iteration",
    "top_eigenpairs", "unflatten",
]

LossFn = Callable[[Sequence[Tensor]], Tensor]

HVP_VARIANTS = ("reuse", "recompute", "func")
"""Hessian-vector products: double backward through one gradient graph kept for the whole
measurement ("reuse"), double backward rebuilding forward and gradient for every product
("recompute"), torch.func forward-over-reverse ``jvp(grad(loss))`` ("func")."""

AUTO_CANDIDATES = ("reuse", "func")
"""What hvp="auto" times and chooses between. "recompute" is "reuse" plus rebuilding the
gradient graph for every product, so it is never the cheaper of the two."""

COLD_MIN_ITER = 8
"""A cold Lanczos start runs at least this many steps: with fewer, a random start can lock on
the second eigenvalue when the top two are close, and the residual test cannot see it."""

_BREAKDOWN = 1e-10  # beta below this times |H| means the Krylov space is invariant


# --------------------------------------------------------------------------- results


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

    @property
    def sharpness(self) -> float:
        """The top (algebraic) eigenvalue."""
        return float(self.eigenvalues[0])


# --------------------------------------------------------------------------- flat vectors


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate tensors into one flat vector, in order."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a flat vector into views shaped like ``like``."""
    chunks = torch.split(vector, [p.numel() for p in like])
    return [c.view_as(p) for c, p in zip(chunks, like)]


def _unit(v: Tensor) -> Tensor:
    norm = torch.linalg.vector_norm(v)
    return v / norm if norm > 0 else v


def _random_vector(n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """A standard normal float64 vector, drawn on the CPU so that a seed means the same on any device."""
    return torch.randn(n, dtype=torch.float64, generator=generator).to(device)


def _orthogonalize(w: Tensor, basis: Tensor) -> Tensor:
    """Remove from ``w`` its components along the orthonormal rows of ``basis``; twice (CGS2)."""
    if basis.shape[0] == 0:
        return w
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


# --------------------------------------------------------------------------- operators


class Operator(Protocol):
    """A symmetric matrix-free operator on flat vectors: all the solvers need to know."""

    size: int
    device: torch.device
    dtype: torch.dtype
    hvps: int

    def matvec(self, v: Tensor) -> Tensor: ...


def gradient(loss_fn: LossFn, params: Sequence[Tensor], *, create_graph: bool = False) -> list[Tensor]:
    """d loss / d params (zeros for parameters the loss does not use)."""
    with torch.enable_grad():
        loss = loss_fn(params)
        grads = torch.autograd.grad(loss, params, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def _has_graph(grads: Sequence[Tensor] | None) -> bool:
    return grads is not None and any(g.requires_grad for g in grads)


def _double_backward(grads: Sequence[Tensor], params: Sequence[Tensor], v: Tensor) -> Tensor:
    """H v as the derivative of <grad, v>, through the graph that produced ``grads``."""
    pairs = [(g, u) for g, u in zip(grads, unflatten(v, params)) if g.requires_grad]
    if not pairs:  # the gradient does not depend on the parameters: H = 0
        return torch.zeros_like(v)
    hv = torch.autograd.grad(
        [g for g, _ in pairs], params, grad_outputs=[u for _, u in pairs],
        retain_graph=True, allow_unused=True,
    )
    return flatten([torch.zeros_like(p) if h is None else h for h, p in zip(hv, params)])


class HessianOperator:
    """The Hessian of ``loss_fn`` at ``params`` as a symmetric operator on flat vectors.

    ``hvp`` picks how a product is computed (see ``HVP_VARIANTS``). With "reuse", ``grads``
    computed with ``create_graph=True`` are used as they are; without them the operator builds
    that graph once, here. Every ``matvec`` adds one to ``hvps``.
    """

    def __init__(
        self, loss_fn: LossFn, params: Sequence[Tensor], *, hvp: str = "reuse",
        grads: Sequence[Tensor] | None = None,
    ) -> None:
        if hvp not in HVP_VARIANTS:
            raise ValueError(f"hvp must be one of {HVP_VARIANTS}, got {hvp!r}")
        params = list(params)
        if len({(p.dtype, p.device) for p in params}) != 1:
            raise ValueError("all parameters must share one dtype and one device")
        self.loss_fn, self.hvp = loss_fn, hvp
        self.params = [p if p.requires_grad else p.detach().requires_grad_(True) for p in params]
        self.size = sum(p.numel() for p in params)
        self.dtype, self.device = params[0].dtype, params[0].device
        self.hvps = 0
        self._product = {"reuse": self._through_kept_graph, "recompute": self._through_new_graph,
                         "func": self._forward_over_reverse}[hvp]
        if hvp == "reuse":
            has_graph = _has_graph(grads)
            self._grads = list(grads) if has_graph else gradient(loss_fn, self.params, create_graph=True)
        elif hvp == "func":
            self._primals = tuple(p.detach() for p in params)
            self._grad_fn = torch.func.grad(lambda ps: loss_fn(ps))

    def matvec(self, v: Tensor) -> Tensor:
        """H v, for a flat ``v`` in the parameters' dtype and device."""
        self.hvps += 1
        with torch.enable_grad():
            return self._product(v)

    def _through_kept_graph(self, v: Tensor) -> Tensor:
        return _double_backward(self._grads, self.params, v)

    def _through_new_graph(self, v: Tensor) -> Tensor:
        return _double_backward(gradient(self.loss_fn, self.params, create_graph=True), self.params, v)

    def _forward_over_reverse(self, v: Tensor) -> Tensor:
        _, hv = torch.func.jvp(self._grad_fn, (self._primals,), (tuple(unflatten(v, self.params)),))
        return flatten(hv)

    __matmul__ = matvec


def _apply(op: Operator, v: Tensor) -> Tensor:
    """One product in the operator's dtype, returned in float64."""
    return op.matvec(v.to(op.dtype)).to(torch.float64)


# --------------------------------------------------------------------------- solvers


def _tridiagonal_eigh(alphas: list[float], betas: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of the small Lanczos tridiagonal, ascending; in NumPy, whose per-call overhead
    on a matrix of a few rows is a fraction of torch's (this runs once per Lanczos step)."""
    t = np.diag(np.asarray(alphas, dtype=np.float64))
    if betas:
        off = np.asarray(betas, dtype=np.float64)
        t += np.diag(off, 1) + np.diag(off, -1)
    return np.linalg.eigh(t)


def lanczos(
    op: Operator, *, k: int = 1, tol: float = 1e-4, max_iter: int = 30, v0: Tensor | None = None,
    min_iter: int = 1, generator: torch.Generator | None = None,
) -> EigenResult:
    """Top-k algebraic eigenpairs by Lanczos with full reorthogonalization (done twice).

    Stops once every one of the top-k Ritz pairs has residual ``|beta_m s_{m,i}|`` (equal to
    the true ``||H y_i - theta_i y_i||`` when the basis is orthogonal) at most
    ``tol * |theta_i|``, after at least ``min_iter`` steps, or after ``max_iter`` steps
    (``converged=False``). One product per step. If the Krylov space becomes invariant
    (e.g. ``v0`` is an eigenvector) it stops there when it has k pairs and ``min_iter`` steps,
    otherwise it continues from a random vector orthogonal to the basis.
    """
    n = op.size
    steps = min(max_iter, n)
    if not 1 <= k <= steps:
        raise ValueError(f"need 1 <= k <= min(max_iter, n); got k={k}, max_iter={max_iter}, n={n}")
    basis = torch.empty(steps + 1, n, dtype=torch.float64, device=op.device)
    start = _random_vector(n, op.device, generator) if v0 is None else v0.to(op.device, torch.float64)
    basis[0] = _unit(start)
    alphas: list[float] = []
    betas: list[float] = []
    converged = False
    for j in range(steps):
        w = _apply(op, basis[j])
        alphas.append(float(basis[j] @ w))
        w = _orthogonalize(w, basis[: j + 1])
        beta = float(torch.linalg.vector_norm(w))
        betas.append(beta)
        theta, s = _tridiagonal_eigh(alphas, betas[:-1])
        top = np.argsort(-theta, kind="stable")[:k]
        residuals = np.abs(beta * s[-1, top])
        m = j + 1
        if m >= max(k, min_iter) and bool((residuals <= tol * np.abs(theta[top])).all()):
            converged = True
            break
        if beta <= _BREAKDOWN * max(float(np.abs(theta).max()), 1e-300):
            if m >= max(k, min_iter) or m == n:
                converged = True  # an invariant subspace: its Ritz pairs are exact
                break
            w = _orthogonalize(_random_vector(n, op.device, generator), basis[:m])
            beta = float(torch.linalg.vector_norm(w))
            betas[-1] = 0.0  # the new block does not couple to the old one
        basis[m] = w / beta
    ritz = torch.from_numpy(np.ascontiguousarray(s[:, top].T)).to(op.device)
    vectors = torch.stack([_unit(y) for y in ritz @ basis[:m]], dim=1)
    return EigenResult(
        eigenvalues=torch.from_numpy(theta[top].copy()), eigenvectors=vectors.to(op.dtype),
        residuals=torch.from_numpy(residuals.copy()),
        hvps=m, iterations=m, converged=converged,
    )


def power_iteration(
    op: Operator, *, k: int = 1, tol: float = 1e-3, max_iter: int = 100, v0: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> EigenResult:
    """PyHessian's estimator: power iteration from a random start, kept as the reference.

    Stops when the Rayleigh quotient changes by less than ``tol`` relative to its previous
    value, or after ``max_iter`` products; for k > 1 each further pair is found the same way,
    keeping the iterate orthogonal to the pairs already found. It converges to the eigenvalue
    of largest MAGNITUDE (which is not the sharpness when a negative eigenvalue dominates) and
    stalls when the top two are close. Returns the last Rayleigh quotient with its vector and
    their true residual (no extra product); PyHessian reports the quotient before the last,
    which differs by less than ``tol``.
    """
    n = op.size
    found: list[Tensor] = []
    values, residuals = [], []
    all_converged, hvps = True, 0
    for i in range(k):
        x = v0 if (v0 is not None and i == 0) else _random_vector(n, op.device, generator)
        x = x.to(op.device, torch.float64)
        deflate = torch.stack(found) if found else x.new_empty(0, n)
        previous, converged = None, False
        for _ in range(max_iter):
            v = _unit(_orthogonalize(x, deflate))
            hv = _apply(op, v)
            hvps += 1
            rayleigh = float(v @ hv)
            if previous is not None and abs(previous - rayleigh) / (abs(previous) + 1e-6) < tol:
                converged = True
                break
            previous, x = rayleigh, hv
        found.append(v)
        values.append(rayleigh)
        residuals.append(float(torch.linalg.vector_norm(hv - rayleigh * v)))
        all_converged &= converged
    order = sorted(range(k), key=lambda i: -values[i])
    return EigenResult(
        eigenvalues=torch.tensor([values[i] for i in order], dtype=torch.float64),
        eigenvectors=torch.stack([found[i] for i in order], dim=1).to(op.dtype),
        residuals=torch.tensor([residuals[i] for i in order], dtype=torch.float64),
        hvps=hvps, iterations=hvps, converged=all_converged,
    )


# --------------------------------------------------------------------------- dense Hessian


def _hessian_by_columns(loss_fn: LossFn, params: Sequence[Tensor]) -> Tensor:
    op = HessianOperator(loss_fn, params, hvp="reuse")
    eye = torch.eye(op.size, dtype=op.dtype, device=op.device)
    return torch.stack([op.matvec(e) for e in eye], dim=1)


def _hessian_by_func(loss_fn: LossFn, params: Sequence[Tensor]) -> Tensor:
    flat = flatten([p.detach() for p in params])
    return torch.func.hessian(lambda x: loss_fn(unflatten(x, params)))(flat)


def exact_hessian(loss_fn: LossFn, params: Sequence[Tensor]) -> Tensor:
    """The dense (n, n) Hessian, for small nets and tests.

    Built with ``torch.func.hessian`` on the flat vector and checked against one
    double-backward product; when torch.func cannot trace the objective (a PINN loss that
    calls ``torch.autograd.grad`` on the network's inputs) or disagrees, column by column
    with double backward.
    """
    params = list(params)
    try:
        hessian = _hessian_by_func(loss_fn, params)
        probe = _random_vector(hessian.shape[0], hessian.device, None).to(hessian.dtype)
        reference = HessianOperator(loss_fn, params, hvp="reuse").matvec(probe)
        error = torch.linalg.vector_norm(hessian @ probe - reference)
        if error > 1e-3 * torch.linalg.vector_norm(reference) + 1e-12:
            raise RuntimeError("torch.func Hessian disagrees with double backward")
    except (RuntimeError, NotImplementedError):
        hessian = _hessian_by_columns(loss_fn, params)
    return 0.5 * (hessian + hessian.T)


def dense_eigenpairs(hessian: Tensor, *, k: int = 1) -> EigenResult:
    """Top-k algebraic eigenpairs of a dense symmetric matrix by ``torch.linalg.eigh``."""
    values, vectors = torch.linalg.eigh(hessian.to(torch.float64))
    values, vectors = values.flip(0)[:k], vectors.flip(1)[:, :k]
    residuals = torch.linalg.vector_norm(hessian.to(torch.float64) @ vectors - vectors * values, dim=0)
    return EigenResult(
        eigenvalues=values.cpu(), eigenvectors=vectors.to(hessian.dtype), residuals=residuals.cpu(),
        hvps=hessian.shape[0], iterations=1, converged=True, hvp="exact",
    )


# --------------------------------------------------------------------------- one-shot entry


_SOLVERS = {"lanczos": lanczos, "power": power_iteration}


def top_eigenpairs(
    loss_fn: LossFn, params: Sequence[Tensor], *, k: int = 1, method: str = "lanczos",
    tol: float = 1e-4, max_iter: int = 30, hvp: str = "reuse", grads: Sequence[Tensor] | None = None,
    v0: Tensor | None = None, generator: torch.Generator | None = None,
) -> EigenResult:
    """Top-k algebraic eigenpairs of the Hessian of ``loss_fn`` at ``params``, cold, in one call.

    ``method`` is "lanczos", "power" or "exact"; ``hvp`` one of ``HVP_VARIANTS`` or "auto"
    (here: "reuse", the fastest in our measurements; ``SharpnessTracker`` times them instead).
    """
    if method == "exact":
        return dense_eigenpairs(exact_hessian(loss_fn, params), k=k)
    if method not in _SOLVERS:
        raise ValueError(f"method must be one of {sorted(_SOLVERS) + ['exact']}, got {method!r}")
    hvp = "reuse" if hvp == "auto" else hvp
    op = HessianOperator(loss_fn, params, hvp=hvp, grads=grads)
    result = _SOLVERS[method](op, k=k, tol=tol, max_iter=max_iter, v0=v0, generator=generator)
    return replace(result, hvp=hvp)


# --------------------------------------------------------------------------- choosing the product


def _timed(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    """Wall seconds of one call, and its output."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


@dataclass
class HvpCosts:
    """Measured seconds per gradient, per gradient-with-graph and per product of each variant."""

    gradient: float
    graph: float  # loss + gradient with create_graph=True, what "reuse" needs once
    hvp: dict[str, float]  # variant -> seconds per product; only variants that gave H v correctly
    excluded: dict[str, str] = field(default_factory=dict)  # variant -> why it was left out
    hvps: int = 0  # products spent measuring all this

    def relative(self) -> dict[str, float]:
        """Seconds per product of each variant, in gradients."""
        return {name: s / self.gradient for name, s in self.hvp.items()}

    def pick(self, *, graph_given: bool, expected_hvps: int, margin: float = 1.25) -> str:
        """The variant with the least expected time for a measurement of ``expected_hvps``
        products; "reuse" pays for building the gradient graph unless the caller gave it, and
        is kept unless another variant is ``margin`` times cheaper (timings vary by ~30%)."""
        cost = {name: expected_hvps * s for name, s in self.hvp.items()}
        if "reuse" not in cost:
            return min(cost, key=cost.get)
        if not graph_given:
            cost["reuse"] += self.graph
        best = min(cost, key=cost.get)
        return best if margin * cost[best] < cost["reuse"] else "reuse"


def measure_hvp_costs(
    loss_fn: LossFn, params: Sequence[Tensor], *, grads: Sequence[Tensor] | None = None,
    variants: Sequence[str] = HVP_VARIANTS, rounds: int = 3, generator: torch.Generator | None = None,
) -> HvpCosts:
    """Time a gradient, the gradient graph and one product of each variant, in interleaved
    rounds, keeping the best of ``rounds`` (contention only ever adds time, and interleaving
    spreads it over all variants). A variant that raises (torch.func on a PINN loss) or whose
    product differs from double backward by more than 1e-3 relative is excluded, with the reason.
    """
    params = list(params)
    device = params[0].device
    graph = grads if _has_graph(grads) else gradient(loss_fn, params, create_graph=True)
    ops = {name: HessianOperator(loss_fn, params, hvp=name, grads=graph) for name in ("reuse", *variants)}
    v = _random_vector(ops["reuse"].size, device, generator).to(params[0].dtype)
    timers: dict[str, Callable[[], object]] = {
        "gradient": lambda: gradient(loss_fn, params),
        "graph": lambda: gradient(loss_fn, params, create_graph=True),
        **{name: (lambda op=op: op.matvec(v)) for name, op in ops.items()},
    }
    best = dict.fromkeys(timers, float("inf"))
    products: dict[str, Tensor] = {}
    excluded: dict[str, str] = {}
    for _ in range(rounds):
        for name, fn in timers.items():
            if name in excluded:
                continue
            try:
                seconds, out = _timed(fn, device)
            except Exception as error:  # any failure of an alternative just rules it out
                if name in ("gradient", "graph", "reuse"):
                    raise
                excluded[name] = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"
                continue
            best[name] = min(best[name], seconds)
            if name in ops:
                products[name] = out
    reference = products["reuse"]
    for name, hv in products.items():
        if torch.linalg.vector_norm(hv - reference) > 1e-3 * torch.linalg.vector_norm(reference) + 1e-12:
            excluded[name] = "disagrees with double backward"
    return HvpCosts(
        gradient=best["gradient"], graph=best["graph"],
        hvp={name: best[name] for name in ops if name in variants and name not in excluded},
        excluded={name: why for name, why in excluded.items() if name in variants},
        hvps=sum(op.hvps for op in ops.values()),
    )


# --------------------------------------------------------------------------- the tracker


class SharpnessTracker:
    """Top-k Hessian eigenpairs along a training run, each measurement warm-started from the last.

    ``method``: "lanczos" (warm-started; the first measurement is cold from a random vector
    seeded by ``seed`` and runs at least ``COLD_MIN_ITER`` steps), "power" (PyHessian's cold
    power iteration with its own stopping rule, relative change < 1e-3 within 100 products,
    whatever ``tol``/``max_iter`` say: the reference) or "exact" (dense Hessian and ``eigh``;
    small nets only).

    ``hvp``: a variant of ``HVP_VARIANTS``, or "auto": the first measurement times the
    ``AUTO_CANDIDATES`` once (``measure_hvp_costs``; a variant that fails or disagrees, e.g.
    torch.func on a PINN loss, is dropped), and every measurement then takes the one with the
    least expected time for as many products as the previous measurement used
    (``HvpCosts.pick``): "reuse" is charged for building the gradient graph unless the caller
    passed ``grads`` that carry one, and is kept unless another variant is 1.25x cheaper. On
    CPU that is "reuse" at every size we measured (forward-over-reverse costs 2-6 gradients
    per product, a product through the kept graph 1.1-2.4).
    """

    def __init__(
        self, *, method: str = "lanczos", k: int = 1, tol: float = 1e-4, max_iter: int = 30,
        hvp: str = "auto", seed: int = 0,
    ) -> None:
        if method not in (*_SOLVERS, "exact"):
            raise ValueError(f"method must be 'lanczos', 'power' or 'exact', got {method!r}")
        if hvp not in (*HVP_VARIANTS, "auto"):
            raise ValueError(f"hvp must be one of {HVP_VARIANTS + ('auto',)}, got {hvp!r}")
        self.method, self.k, self.tol, self.max_iter, self.hvp = method, k, tol, max_iter, hvp
        self.costs: HvpCosts | None = None
        self.measurements = 0
        self._generator = torch.Generator().manual_seed(seed)
        self._eigenvectors: Tensor | None = None
        # The last eigenvectors measured at even and at odd steps: at the edge of stability GD
        # oscillates with period 2, so the Hessian two steps back is the closer one.
        self._by_parity: dict[int, Tensor] = {}
        self._step: int | None = None
        self._expected_hvps = max(k + 2, 4)

    def measure(
        self, loss_fn: LossFn, params: Sequence[Tensor], grads: Sequence[Tensor] | None = None,
        *, step: int | None = None,
    ) -> EigenResult:
        """Top-k eigenpairs of the Hessian of ``loss_fn`` at ``params``.

        ``grads``, if given, must be ``torch.autograd.grad(loss_fn(params), params,
        create_graph=True)`` at these same parameters: products then reuse that graph.
        ``step``, the GD step, lets the warm start come from the latest measurement at a step
        of the same parity (measured here: 5.0 -> 2.3 products per measurement at the edge of
        stability when measuring every step); without it, from the previous measurement.
        """
        params = list(params)
        self._step = step
        with torch.enable_grad():
            if self.method == "exact":
                result = dense_eigenpairs(exact_hessian(loss_fn, params), k=self.k)
            else:
                spent, variant = self._choose_hvp(loss_fn, params, grads)
                op = HessianOperator(loss_fn, params, hvp=variant, grads=grads)
                result = self._solve(op)
                self._expected_hvps = result.hvps
                result = replace(result, hvps=result.hvps + spent, hvp=variant)
        self._eigenvectors = result.eigenvectors.detach().clone()
        if step is not None:
            self._by_parity[step % 2] = self._eigenvectors
        self.measurements += 1
        return result

    def _choose_hvp(self, loss_fn: LossFn, params: list[Tensor], grads) -> tuple[int, str]:
        if self.hvp != "auto":
            return 0, self.hvp
        spent = 0
        if self.costs is None:
            self.costs = measure_hvp_costs(
                loss_fn, params, grads=grads, variants=AUTO_CANDIDATES, generator=self._generator
            )
            spent = self.costs.hvps
        return spent, self.costs.pick(graph_given=_has_graph(grads), expected_hvps=self._expected_hvps)

    def _solve(self, op: HessianOperator) -> EigenResult:
        if self.method == "power":
            return power_iteration(op, k=self.k, tol=1e-3, max_iter=100, generator=self._generator)
        v0 = self._warm_start(op)
        min_iter = 1 if v0 is not None else min(COLD_MIN_ITER, self.max_iter, op.size)
        return lanczos(
            op, k=self.k, tol=self.tol, max_iter=self.max_iter, v0=v0, min_iter=min_iter,
            generator=self._generator,
        )

    def _warm_start(self, op: HessianOperator) -> Tensor | None:
        """The previous top eigenvector (at a step of the same parity, when steps are given);
        for k > 1 the sum of the previous k, so that the first k Krylov vectors nearly span them."""
        previous = self._eigenvectors
        if self._step is not None and self._step % 2 in self._by_parity:
            previous = self._by_parity[self._step % 2]
        if previous is None or previous.shape != (op.size, self.k):
            return None
        return previous.to(op.device, torch.float64).sum(dim=1)

    def state_dict(self) -> dict:
        """What a resumed run needs to continue warm: previous eigenvectors, RNG, HVP timings."""
        return {
            "eigenvectors": None if self._eigenvectors is None else self._eigenvectors.cpu().clone(),
            "by_parity": {parity: v.cpu().clone() for parity, v in self._by_parity.items()},
            "costs": None if self.costs is None else asdict(self.costs),
            "expected_hvps": self._expected_hvps,
            "measurements": self.measurements,
            "generator": self._generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict()``: the next measurement is warm."""
        self._eigenvectors = state["eigenvectors"]
        self._by_parity = dict(state.get("by_parity", {}))
        self.costs = None if state["costs"] is None else HvpCosts(**state["costs"])
        self._expected_hvps = state["expected_hvps"]
        self.measurements = state["measurements"]
        self._generator.set_state(state["generator"])

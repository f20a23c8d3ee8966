"""Curvature operators on the flat parameter vector: the Hessian, its three products and how one is
chosen, its dense form for small nets, and a dense matrix as an operator (the oracle in tests).
The Gauss-Newton operator is in ``ggn``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from .base import LossFn, differentiable, flatten, random_vector, unflatten

HVP_VARIANTS = ("reuse", "recompute", "func")
"""Hessian-vector products: double backward through one gradient graph kept for the whole
measurement ("reuse"), double backward rebuilding forward and gradient for every product
("recompute"), torch.func forward-over-reverse ``jvp(grad(loss))`` ("func")."""

AUTO_CANDIDATES = ("reuse", "func")
"""What hvp="auto" times and chooses between. "recompute" is "reuse" plus rebuilding the
gradient graph for every product, so it is never the cheaper of the two."""


def gradient(loss_fn: LossFn, params: Sequence[Tensor], *, create_graph: bool = False) -> list[Tensor]:
    """d loss / d params (zeros for parameters the loss does not use)."""
    with torch.enable_grad():
        loss = loss_fn(params)
        grads = torch.autograd.grad(loss, params, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def has_graph(grads: Sequence[Tensor] | None) -> bool:
    """Whether ``grads`` were computed with ``create_graph=True``, so products can reuse them."""
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


# --------------------------------------------------------------------------- the Hessian


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
        self.loss_fn, self.hvp = loss_fn, hvp
        self.params = differentiable(params)
        self.size = sum(p.numel() for p in self.params)
        self.dtype, self.device = self.params[0].dtype, self.params[0].device
        self.hvps = 0
        self._product = {"reuse": self._through_kept_graph, "recompute": self._through_new_graph,
                         "func": self._forward_over_reverse}[hvp]
        if hvp == "reuse":
            self._grads = list(grads) if has_graph(grads) else gradient(loss_fn, self.params, create_graph=True)
        elif hvp == "func":
            self._primals = tuple(p.detach() for p in self.params)
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


class MatrixOperator:
    """A dense symmetric matrix as an operator: the oracle in tests and benchmarks."""

    def __init__(self, matrix: Tensor) -> None:
        self.matrix = matrix
        self.size = matrix.shape[0]
        self.dtype, self.device = matrix.dtype, matrix.device
        self.hvps = 0

    def matvec(self, v: Tensor) -> Tensor:
        self.hvps += 1
        return self.matrix @ v

    __matmul__ = matvec


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
        probe = random_vector(hessian.shape[0], hessian.device, None).to(hessian.dtype)
        reference = HessianOperator(loss_fn, params, hvp="reuse").matvec(probe)
        error = torch.linalg.vector_norm(hessian @ probe - reference)
        if error > 1e-3 * torch.linalg.vector_norm(reference) + 1e-12:
            raise RuntimeError("torch.func Hessian disagrees with double backward")
    except (RuntimeError, NotImplementedError):
        hessian = _hessian_by_columns(loss_fn, params)
    return 0.5 * (hessian + hessian.T)


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
    probe: Tensor | None = None,
) -> HvpCosts:
    """Time a gradient, the gradient graph and one product of each variant, in interleaved
    rounds, keeping the best of ``rounds`` (contention only ever adds time, and interleaving
    spreads it over all variants). A variant that raises (torch.func on a PINN loss) or whose
    product differs from double backward by more than 1e-3 relative is excluded, with the reason.
    The products are of ``probe`` (flat, float64), or of a random vector drawn from ``generator``.
    """
    params = list(params)
    device = params[0].device
    graph = grads if has_graph(grads) else gradient(loss_fn, params, create_graph=True)
    ops = {name: HessianOperator(loss_fn, params, hvp=name, grads=graph) for name in ("reuse", *variants)}
    v = (random_vector(ops["reuse"].size, device, generator) if probe is None else probe).to(params[0].dtype)
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

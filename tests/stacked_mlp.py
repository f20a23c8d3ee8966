"""A tiny MLP stacked along a leading member dimension, the shape of an ensemble (issue 12): weights
(E, out, in), biases (E, out), one batched matmul per layer. For tests/test_curvature_ensemble.py and
benchmarks/bench_lanczos_batched.py."""

from __future__ import annotations

import torch


def member_params(seed: int, widths: tuple[int, ...], dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    """One member's weights and biases, layer by layer, as ``torch.nn.Linear`` draws them after
    ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    params = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        layer = torch.nn.Linear(fan_in, fan_out).to(dtype)
        params += [layer.weight.detach().clone(), layer.bias.detach().clone()]
    return params


def stack(members: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """The members' parameters stacked along a new leading dimension, requiring grad."""
    return [torch.stack(ps).requires_grad_(True) for ps in zip(*members)]


def forward_stacked(params, x):
    """x (E, n, in) -> (E, n, out): tanh between layers, none after the last."""
    h = x
    for i in range(0, len(params), 2):
        h = torch.baddbmm(params[i + 1].unsqueeze(1), h, params[i].mT)
        h = torch.tanh(h) if i + 2 < len(params) else h
    return h

"""The network: a fully connected MLP, input_dim -> width x depth -> 1, and the ensemble form
the trainer descends: E members' weights stacked along a leading member dimension.

Every ensemble maps inputs (E, n, d), or (n, d) shared by all members, to outputs (E, n), has
``members`` and gives each member's weights in the plain network's state-dict format
(``member_state_dict``), which model.pt and checkpoint.pt keep.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
}


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` units with PyTorch's default initialisation;
    maps (n, input_dim) to (n,)."""

    def __init__(self, input_dim: int, width: int = 16, depth: int = 2, activation: str = "tanh", bias: bool = True):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
        layers: list[nn.Module] = []
        fan_in = input_dim
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width, bias=bias), ACTIVATIONS[activation]()]
            fan_in = width
        layers.append(nn.Linear(fan_in, 1, bias=bias))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)


class StackedMLP(nn.Module):
    """E MLPs of one shape as one module: layer i's weight (E, out, in) and bias (E, out),
    forward by ``torch.baddbmm`` on feature-major activations (E, features, n).
    Built from the members' own MLPs, so member e starts where its separate run starts. The
    parameters come in the plain MLP's order (weight, bias per layer): flat vectors over them
    (the curvature's eigenvectors) line up with a separate run's."""

    def __init__(self, members: Sequence[MLP]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0]
        self.members = len(members)
        activation = next((m for m in first.net if not isinstance(m, nn.Linear)), nn.Identity())
        self.activation = stacked_tanh if isinstance(activation, nn.Tanh) else activation
        self._keys = list(first.state_dict())  # the plain MLP's names, for member_state_dict
        self.has_bias = first.net[0].bias is not None
        with torch.no_grad():
            self.stacked = nn.ParameterList(
                nn.Parameter(torch.stack([m.state_dict()[k] for m in members])) for k in self._keys
            )

    def forward(self, x: Tensor) -> Tensor:
        # feature-major: activations (E, features, n), so each layer's products run along the
        # n points (out=1 is a row, not a column: 4x faster at n=512), and inputs every member
        # shares, (n, d), are one (E*out, d) x (d, n) product (7x faster than a batched one)
        h = x.t() if x.dim() == 2 else x.transpose(1, 2)
        step = 2 if self.has_bias else 1
        layers = len(self.stacked) // step
        for i in range(layers):
            w = self.stacked[step * i]
            b = self.stacked[step * i + 1] if self.has_bias else None
            if h.dim() == 2:
                flat = w.reshape(-1, w.shape[-1])
                h = (torch.addmm(b.reshape(-1, 1), flat, h) if b is not None else flat @ h).view(self.members, w.shape[1], -1)
            else:
                h = torch.baddbmm(b.unsqueeze(2), w, h) if b is not None else torch.bmm(w, h)
            if i < layers - 1:
                h = self.activation(h)
        return h.squeeze(1)

    def member_state_dict(self, e: int) -> dict[str, Tensor]:
        """Member ``e``'s weights as the plain MLP's state dict (what model.pt holds)."""
        return {k: t[e].detach().clone() for k, t in zip(self._keys, self.stacked)}

    def load_member_state_dict(self, e: int, state: dict[str, Tensor]) -> None:
        """Set member ``e`` from a plain MLP's state dict; a mismatch is a RuntimeError, as for
        ``nn.Module.load_state_dict``."""
        if sorted(state) != sorted(self._keys):
            raise RuntimeError(f"Error(s) in loading state_dict: expected keys {self._keys}, got {sorted(state)}")
        with torch.no_grad():
            for k, t in zip(self._keys, self.stacked):
                if tuple(state[k].shape) != tuple(t.shape[1:]):
                    raise RuntimeError(f"size mismatch for {k}: copying a param with shape {tuple(state[k].shape)}, "
                                       f"the model has {tuple(t.shape[1:])}")
                t[e].copy_(state[k])


def stacked_tanh(x: Tensor) -> Tensor:
    """tanh for an ensemble's activations: NumPy's SIMD kernel on the CPU in float32/float64,
    torch.tanh elsewhere (CUDA, other dtypes, inside torch.func transforms, which cannot see
    through NumPy). Both agree to 2 ulp, as bmm agrees with a separate run's matmul. On
    (64, 16, 512) activations (2 cores) torch 2.13's CPU tanh takes 4.4x NumPy's time in
    float32, 1.5x in float64 (``benchmarks/bench_stacked.py``): it was half the training loop of
    an ensemble of 64. A single run keeps torch.tanh (nn.Tanh): its bits do not change."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or torch._C._are_functorch_transforms_active():
        return torch.tanh(x)
    return _NumpyTanh.apply(x)


class _NumpyTanh(torch.autograd.Function):
    """y = tanh(x) by np.tanh; its gradient g (1 - y^2) is aten's tanh_backward, which autograd
    differentiates again (Hessian-vector products, a PDE loss's input derivatives)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = torch.from_numpy(np.tanh(x.detach().numpy()))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class SoloEnsemble(nn.Module):
    """Any network mapping (n, d) to (n,) as an ensemble of one: a single run's MLP (exactly
    today's kernels and autograd graph: same bits, no extra ops) or a custom ``model._target_``
    (never batched). Its parameters keep their own shapes: the member dimension is implicit."""

    members = 1

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x[0] if x.dim() == 3 else x).unsqueeze(0)

    def member_state_dict(self, e: int) -> dict[str, Tensor]:
        return self.module.state_dict()

    def load_member_state_dict(self, e: int, state: dict[str, Tensor]) -> None:
        self.module.load_state_dict(state)


def member_module(model: nn.Module, e: int, template: nn.Module) -> nn.Module:
    """Member ``e`` of an ensemble as a plain network: ``template`` (a network of its shape)
    loaded with the member's weights."""
    if isinstance(model, SoloEnsemble):
        return model.module
    template.load_state_dict(model.member_state_dict(e))
    return template

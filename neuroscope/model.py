"""The network: a fully connected MLP, input_dim -> width x depth -> 1."""
from __future__ import annotations

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


"""The ensemble's network (model.StackedMLP) against its members' plain MLPs, and its tanh
(model.stacked_tanh, NumPy's kernel) against torch.tanh and finite differences."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neuroscope.model import MLP, StackedMLP, stacked_tanh


def _members(n: int, input_dim: int, dtype=torch.float64, **kw) -> list[MLP]:
    nets = []
    for seed in range(n):
        torch.manual_seed(seed)
        nets.append(MLP(input_dim, **kw).to(dtype))
    return nets


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stacked_tanh_is_within_two_ulp_of_torch_tanh_over_the_whole_range(dtype):
    x = torch.cat([torch.linspace(-30, 30, 200_001, dtype=dtype), torch.logspace(-40, 1, 1001, dtype=dtype),
                   torch.tensor([0.0, -0.0, math.inf, -math.inf, 1e-45, 5e-324, 20.0, 9.1], dtype=dtype)])
    got, want = stacked_tanh(x), torch.tanh(x)
    ulp = torch.finfo(dtype).eps * want.abs().clamp(min=torch.finfo(dtype).tiny)
    assert torch.all((got - want).abs() <= 2 * ulp)
    assert torch.equal(torch.signbit(got[x == 0]), torch.signbit(x[x == 0]))  # -0.0 stays -0.0
    assert torch.isnan(stacked_tanh(torch.tensor([math.nan], dtype=dtype))).all()
    assert got.dtype == dtype


def test_stacked_tanh_derivatives_to_third_order_pass_gradcheck():
    """Finite differences as the oracle: the gradient, Hessian-vector products and a PDE
    loss's input derivatives all differentiate through it."""
    x = torch.linspace(-3, 3, 11, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(stacked_tanh, (x,))
    assert torch.autograd.gradgradcheck(stacked_tanh, (x,))

    def second(v):
        (d1,) = torch.autograd.grad(stacked_tanh(v).sum(), v, create_graph=True)
        return d1

    assert torch.autograd.gradgradcheck(second, (x,))  # third derivatives


@pytest.mark.parametrize("input_dim,bias", [(1, True), (2, True), (3, False)])
def test_the_stacked_forward_equals_each_members_plain_network(input_dim, bias):
    nets = _members(4, input_dim, width=8, depth=3, bias=bias)
    model = StackedMLP(nets)
    shared = torch.rand(37, input_dim, dtype=torch.float64) * 4 - 2
    own = torch.rand(4, 37, input_dim, dtype=torch.float64) * 4 - 2
    with torch.no_grad():
        assert torch.allclose(model(shared), torch.stack([n(shared) for n in nets]), rtol=1e-13, atol=1e-15)
        assert torch.allclose(model(own), torch.stack([n(x) for n, x in zip(nets, own)]), rtol=1e-13, atol=1e-15)
    assert model(shared).shape == (4, 37)


def test_a_members_input_derivatives_and_hessian_equal_its_plain_networks():
    """Per member u_x and u_xx (what a PDE residual needs) and the Hessian of a loss, by
    double backward through NumPy's tanh and by torch.func (where torch.tanh stands in)."""
    nets = _members(3, 1, width=6, depth=2)
    model = StackedMLP(nets)
    x = torch.linspace(-1, 1, 9, dtype=torch.float64).reshape(1, 9, 1).expand(3, 9, 1).clone().requires_grad_(True)
    u = model(x)
    (ux,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    (uxx,) = torch.autograd.grad(ux.sum(), x)
    for e, net in enumerate(nets):
        xe = x[e].detach().clone().requires_grad_(True)
        (want_x,) = torch.autograd.grad(net(xe).sum(), xe, create_graph=True)
        (want_xx,) = torch.autograd.grad(want_x.sum(), xe)
        assert torch.allclose(ux[e], want_x, rtol=1e-12, atol=1e-14)
        assert torch.allclose(uxx[e], want_xx, rtol=1e-12, atol=1e-14)

    data_x = torch.linspace(-2, 2, 16, dtype=torch.float64).reshape(-1, 1)
    y = torch.sin(data_x).reshape(-1)
    shapes = [p.shape for p in model.stacked]
    sizes = [math.prod(s) for s in shapes]

    def loss_of(flat):
        params = [t.reshape(s) for t, s in zip(torch.split(flat, sizes), shapes)]
        out = torch.func.functional_call(model, {f"stacked.{i}": p for i, p in enumerate(params)}, (data_x,))
        return ((out - y) ** 2).mean(dim=1).sum()

    flat = torch.cat([p.detach().reshape(-1) for p in model.stacked]).requires_grad_(True)
    exact = torch.func.hessian(loss_of)(flat)  # torch.func: torch.tanh inside
    v = torch.randn_like(flat)
    (g,) = torch.autograd.grad(loss_of(flat), flat, create_graph=True)
    (hv,) = torch.autograd.grad(g @ v, flat)  # double backward: NumPy's tanh
    assert torch.allclose(hv, exact @ v, rtol=1e-10, atol=1e-12)
    assert np.count_nonzero(exact.detach().numpy()) > 0

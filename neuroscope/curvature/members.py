"""Ensembles: E independent models trained as one, every parameter tensor stacked along a leading
member dimension. The summed loss has a block-diagonal Hessian, so one Hessian-vector product of
the stack gives every member's product at once. Here: the (E, P) layout of per-member flat
vectors, operators on it, one member's block seen as an ordinary operator, and the members' dense
Hessian blocks.

Row e of an (E, P) matrix is member e's flat vector ``torch.cat([p[e].reshape(-1) for p in
params])``. A single, unstacked model is the ensemble of one: its flat vector is the only row.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .base import LossFn, MemberOperator, Operator
from .operators import exact_hessian


class MemberLayout:
    """How the flat vector over stacked parameters (parameter after parameter, each member-major)
    maps to the (E, P) matrix of per-member flat vectors and back."""

    def __init__(self, sizes: Sequence[int], members: int) -> None:
        self.members, self.sizes = members, list(sizes)
        self.size = sum(self.sizes)  # P, parameters per member

    @classmethod
    def stacked(cls, params: Sequence[Tensor], members: int) -> MemberLayout:
        """The layout of ``params`` whose leading dimension is the member (checked); for one
        member, parameters of any shape (a single run's unstacked model is the ensemble of one)."""
        if members == 1:
            return cls([p.numel() for p in params], 1)
        shapes = [tuple(p.shape) for p in params]
        if any(len(shape) == 0 or shape[0] != members for shape in shapes):
            raise ValueError(f"every stacked parameter needs a leading member dimension of {members}; got shapes {shapes}")
        return cls([p[0].numel() for p in params], members)

    @classmethod
    def whole(cls, size: int) -> MemberLayout:
        """One member: the whole flat vector is its row."""
        return cls([size], 1)

    def rows(self, flat: Tensor) -> Tensor:
        """The flat vector over the stacked parameters as (E, P) member rows."""
        if self.members == 1:
            return flat.view(1, -1)
        chunks = torch.split(flat, [self.members * s for s in self.sizes])
        return torch.cat([c.view(self.members, -1) for c in chunks], dim=1)

    def flat(self, rows: Tensor) -> Tensor:
        """(E, P) member rows as the flat vector over the stacked parameters (``rows``' inverse)."""
        if self.members == 1:
            return rows.reshape(-1)
        return torch.cat([c.reshape(-1) for c in torch.split(rows, self.sizes, dim=1)])


class MemberRows:
    """An operator on the flat vector over stacked parameters (``HessianOperator`` of the summed
    loss, ``GaussNewtonOperator``), applied to (E, P) member rows. ``hvps`` counts batched
    products: each serves every member."""

    def __init__(self, op: Operator, layout: MemberLayout) -> None:
        if op.size != layout.members * layout.size:
            raise ValueError(f"operator of size {op.size} does not fit {layout.members} members of {layout.size}")
        self.op, self.layout = op, layout
        self.members, self.size = layout.members, layout.size
        self.device, self.dtype = op.device, op.dtype

    @property
    def hvps(self) -> int:
        return self.op.hvps

    def matvec(self, v: Tensor) -> Tensor:
        return self.layout.rows(self.op.matvec(self.layout.flat(v)))


def as_members(op: Operator) -> MemberRows:
    """A single operator as the ensemble of one."""
    return MemberRows(op, MemberLayout.whole(op.size))


class MemberBlock:
    """Member ``member``'s diagonal block of an ensemble operator, as an ordinary operator on its
    flat vector: every product is one batched product with the other members' rows zero (for
    solvers that have no batched form, e.g. power iteration)."""

    def __init__(self, op: MemberOperator, member: int) -> None:
        self.op, self.member = op, member
        self.size, self.device, self.dtype = op.size, op.device, op.dtype
        self.hvps = 0

    def matvec(self, v: Tensor) -> Tensor:
        self.hvps += 1
        rows = v.new_zeros(self.op.members, self.size)
        rows[self.member] = v
        return self.op.matvec(rows)[self.member]

    __matmul__ = matvec


def member_hessians(loss_fn: LossFn, params: Sequence[Tensor], members: int, active: Sequence[bool]) -> list[Tensor | None]:
    """Each active member's dense (P, P) Hessian block (``exact_hessian`` of the loss as a function
    of that member's parameters alone, the others held fixed); None for an inactive one. With one
    member the block is the whole Hessian of ``params``, stacked or not."""
    params = list(params)
    if members == 1:
        return [exact_hessian(loss_fn, params) if active[0] else None]
    blocks: list[Tensor | None] = []
    for e in range(members):
        if not active[e]:
            blocks.append(None)
            continue
        fixed = [p.detach() for p in params]

        def member_loss(ps: Sequence[Tensor], e: int = e) -> Tensor:
            return loss_fn([torch.cat([p[:e], q.unsqueeze(0), p[e + 1:]]) for p, q in zip(fixed, ps)])

        blocks.append(exact_hessian(member_loss, [p[e] for p in fixed]))
    return blocks

"""Inputs shared by the head tests: fixed vectors and non-trivial normalisation statistics."""

from __future__ import annotations

import torch

D_A, D_T = 10, 14


def inputs(b: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, D_A, generator=g), torch.randn(b, D_T, generator=g)


def with_stats(head):
    """Non-trivial normalisation so the tests also check that it is applied."""
    g = torch.Generator().manual_seed(1)
    head.set_normalisation(
        torch.randn(D_A, generator=g), torch.rand(D_A, generator=g) + 0.5,
        torch.randn(D_T, generator=g), torch.rand(D_T, generator=g) + 0.5,
        torch.tensor([3.0, 2.5]), torch.tensor([0.8, 1.2]),
    )
    return head


def checksum(head: torch.nn.Module) -> float:
    """Position-weighted sum of every parameter, in registration order: changes when a weight's value or
    the order the parameters are drawn in changes."""
    return float(sum((i + 1) * p.detach().double().sum() for i, p in enumerate(head.parameters())))

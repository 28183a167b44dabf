"""Inputs shared by the head tests: fixed vectors and non-trivial normalisation statistics."""

from __future__ import annotations

from typing import Any

import torch

from erc.heads import FUSIONS as FUSIONS_

D_A, D_T = 10, 14
SEQ_LENGTHS = ((6, 2), (3, 5), (1, 4), (4, 4), (2, 1))  # (frames, tokens) per utterance, cycled


def inputs(b: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, D_A, generator=g), torch.randn(b, D_T, generator=g)


def inputs_for(fusion: str, b: int = 5, seed: int = 0) -> tuple[Any, Any]:
    """What head ``fusion`` reads for ``b`` utterances: :func:`inputs`, or padded token sequences of
    varied lengths (a head that reads sequences, erc.sequences.SeqBatch)."""
    from erc.heads import get
    from erc.sequences import SeqBatch

    if not get(fusion).reads_sequences:
        return inputs(b, seed)
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([SEQ_LENGTHS[i % len(SEQ_LENGTHS)] for i in range(b)])  # (B, 2)

    def batch(n: torch.Tensor, dim: int) -> SeqBatch:
        mask = torch.arange(int(n.max()))[None, :] < n[:, None]
        return SeqBatch(torch.randn(b, int(n.max()), dim, generator=g), mask)
    return batch(lengths[:, 0], D_A), batch(lengths[:, 1], D_T)


def sequence_fusions() -> list[str]:
    from erc.heads import FUSIONS, get

    return [f for f in FUSIONS if get(f).reads_sequences]


def vector_fusions() -> list[str]:
    """The fusions that read pooled vectors (and can mix encoder layers)."""
    return [f for f in FUSIONS_ if f not in sequence_fusions()]


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

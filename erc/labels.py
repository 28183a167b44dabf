"""Training targets from the 10 raters' votes (DESIGN §3): soft, hard and PeakL.

Every function is vectorised over an ``(N, K)`` array (K classes, :data:`erc.vocab.EMOTIONS` by default)
and keeps the array library of its input: numpy in → numpy out, torch in → torch out.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from erc.vocab import EMOTIONS, N_CLASSES

__all__ = ["EMOTIONS", "entropy", "hard", "peakl", "soft"]  # EMOTIONS: re-exported, data readers import it here

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def soft(votes: Array) -> Array:
    """Vote shares: ``votes / votes.sum()`` per row."""
    if isinstance(votes, torch.Tensor):
        v = votes.double() if not votes.is_floating_point() else votes
        return v / v.sum(dim=-1, keepdim=True)
    v = np.asarray(votes, dtype=np.float64)
    return v / v.sum(axis=-1, keepdims=True)


def hard(votes: Array) -> Array:
    """Majority class per row, or -1 where the top count is shared (a "deuce")."""
    if isinstance(votes, torch.Tensor):
        top = votes.max(dim=-1, keepdim=True).values
        tied = (votes == top).sum(dim=-1) > 1
        return torch.where(tied, torch.full_like(votes.argmax(dim=-1), -1), votes.argmax(dim=-1))
    v = np.asarray(votes)
    top = v.max(axis=-1, keepdims=True)
    tied = (v == top).sum(axis=-1) > 1
    return np.where(tied, -1, v.argmax(axis=-1))


def peakl(y: Array, num_classes: int = N_CLASSES) -> Array:
    """Peaking Labels: sharpen a soft label by its own entropy.

    ``r = tanh(H(y))``, ``y' = max(0, y - r/K) / (1 - r)``, renormalised to sum to 1.
    The seed prints ``min(0, …)``; its reference implementation clamps from below (a ReLU),
    which is the only reading that yields a distribution. A one-hot ``y`` has ``r = 0`` and
    is returned unchanged.
    """
    if isinstance(y, torch.Tensor):
        y = y.double() if not y.is_floating_point() else y
        plogp = torch.where(y > 0, y * torch.log(y.clamp_min(1e-300)), torch.zeros_like(y))
        r = torch.tanh(-plogp.sum(dim=-1, keepdim=True))
        peaked = torch.clamp(y - r / num_classes, min=0) / (1 - r)
        return peaked / peaked.sum(dim=-1, keepdim=True)
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)), 0.0)
    r = np.tanh(-plogp.sum(axis=-1, keepdims=True))
    peaked = np.maximum(y - r / num_classes, 0.0) / (1 - r)
    return peaked / peaked.sum(axis=-1, keepdims=True)


def entropy(y: Array) -> Array:
    """Shannon entropy (nats) per row, with 0·ln 0 = 0."""
    if isinstance(y, torch.Tensor):
        return -torch.where(y > 0, y * torch.log(y.clamp_min(1e-300)), torch.zeros_like(y)).sum(dim=-1)
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)), 0.0).sum(axis=-1)

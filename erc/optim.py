"""Optimisation settings of a run and the optimiser they build."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-4  # AdamW's decoupled weight decay
    batch_size: int = 32
    epochs: int = 15
    grad_clip: float = 1.0  # max global gradient norm (the paper's Lightning trainer: 1); 0 = off

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs ({self.epochs}) and batch_size ({self.batch_size}) must be >= 1")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("lr must be > 0; weight_decay and grad_clip >= 0")


def make_optimizer(params: Iterable[nn.Parameter], config: OptimConfig) -> torch.optim.Optimizer:
    # fused AdamW: one kernel for all parameters; the per-tensor loop dominates small heads' steps on CPU
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)

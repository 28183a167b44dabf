"""Optimisation settings of a run: the optimiser, its learning-rate schedule, early stopping, precision.

The defaults train a head on cached features (constant learning rate, AdamW). The paper's recipe
(:mod:`erc.protocol`) sets two learning rates (encoders 1e-5, head 1e-4), AdamW eps 1e-8 and weight
decay 1e-6, ``CosineAnnealingWarmRestarts(T_0=500 steps, T_mult=2, eta_min=1e-7)`` stepped after
every optimisation step, and early stopping with patience 5 on the selection metric.

Importing this module does not import torch (the functions do, when called): :class:`OptimConfig` is
part of the run configuration that entry points read before any training, e.g. the ``--epochs``
default a sweep's ``--help`` shows, and :mod:`erc.protocol` reads its defaults.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch
    from torch import nn

    ParamGroups = Iterable[nn.Parameter] | list[dict[str, Any]]

Scheduler = Literal["none", "cosine_restarts"]
Precision = Literal["fp32", "bf16"]


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    lr: float = 1e-3  # the head's learning rate (projections included)
    encoder_lr: float = 1e-5  # finetune mode: both encoders' learning rate (the paper's 1e-5)
    weight_decay: float = 1e-4  # AdamW's decoupled weight decay
    adam_eps: float = 1e-8
    batch_size: int = 32
    epochs: int = 15
    grad_clip: float = 1.0  # max global gradient norm (the paper's Lightning trainer: 1); 0 = off
    scheduler: Scheduler = "none"  # cosine_restarts: CosineAnnealingWarmRestarts, stepped every step
    restart_steps: int = 500  # T_0: optimisation steps of the first cosine cycle
    restart_mult: int = 2  # T_mult: each cycle this many times longer than the one before
    min_lr: float = 1e-7  # eta_min
    patience: int = 0  # early stopping: stop after this many epochs without a better select_metric; 0 = off
    precision: Precision = "fp32"  # bf16: forward passes under torch.autocast(bfloat16)
    freeze_cnn: bool = False  # finetune mode: keep wav2vec2's CNN feature encoder frozen
    grad_checkpointing: bool = False  # finetune mode: recompute encoder activations in the backward pass

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs ({self.epochs}) and batch_size ({self.batch_size}) must be >= 1")
        if self.lr <= 0 or self.encoder_lr <= 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("lr and encoder_lr must be > 0; weight_decay and grad_clip >= 0")
        if self.adam_eps <= 0 or self.min_lr < 0:
            raise ValueError("adam_eps must be > 0 and min_lr >= 0")
        if self.restart_steps < 1 or self.restart_mult < 1 or self.patience < 0:
            raise ValueError("restart_steps and restart_mult must be >= 1, patience >= 0")


def make_optimizer(params: ParamGroups, config: OptimConfig) -> torch.optim.Optimizer:
    """AdamW over ``params`` (parameters, or param groups each with its own ``lr``)."""
    import torch

    # fused AdamW: one kernel for all parameters; the per-tensor loop dominates small heads' steps on CPU
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, eps=config.adam_eps,
                             fused=True)


def make_scheduler(optimizer: torch.optim.Optimizer, config: OptimConfig
                   ) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The learning-rate schedule, stepped once after every optimisation step (None: constant)."""
    import torch

    if config.scheduler == "cosine_restarts":
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=config.restart_steps, T_mult=config.restart_mult, eta_min=config.min_lr)
    return None


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to bfloat16 for ``precision='bf16'`` (CPU or CUDA), else nothing."""
    if precision == "bf16":
        import torch

        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class EarlyStopping:
    """Counts epochs since the selection metric last improved; ``stop`` once ``patience`` have passed."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.since_best = 0

    def update(self, improved: bool) -> None:
        self.since_best = 0 if improved else self.since_best + 1

    @property
    def stop(self) -> bool:
        return self.patience > 0 and self.since_best >= self.patience

    def state_dict(self) -> dict[str, int]:
        return {"patience": self.patience, "since_best": self.since_best}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.since_best = int(state["since_best"])


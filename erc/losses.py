"""Multitask loss (DESIGN §5): ``cls_coef · L_cls + (1 - cls_coef) · L_reg``.

- ``L_cls``: cross-entropy against class indices (hard arm) or probability vectors (soft, peakl),
  optionally focal, in one of two variants (``focal``):

  - ``sample``: each sample's CE is weighted by ``(1 - p_t)^gamma`` where ``p_t`` is the
    probability the model gives to the target, ``p_t = Σ_i q_i p_i`` for a target distribution q
    (for a one-hot q this is the usual focal loss of Lin et al.);
  - ``batch`` (the paper's original code): the focal weight of the batch-mean CE,
    ``(1 - exp(-CE_mean))^gamma · CE_mean`` — one weight for the whole batch.

  gamma = 0 is plain CE in both.
- ``L_reg``: mean squared error on valence and arousal (mean over both).

A corpus without dimensions (CREMA-D; ``va_target`` of shape (B, 0), a head with no dimensional
outputs) has no ``L_reg``: the loss is ``L_cls`` alone (``cls_coef`` does not scale it) and
``reg_loss`` is 0 in the training loss and absent from the validation metrics (:mod:`erc.trainer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from erc.heads import split_output
from erc.vocab import LABEL_ARMS

LabelArm = Literal[LABEL_ARMS]  # type: ignore[valid-type]
Focal = Literal["sample", "batch"]
FOCAL_VARIANTS: tuple[str, ...] = get_args(Focal)


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    """What a head is trained towards: the label arm (DESIGN §3) and the multitask loss."""

    labels: LabelArm = "peakl"  # hard drops tied utterances from training
    cls_coef: float = 0.7  # loss = cls_coef · L_cls + (1 - cls_coef) · L_reg (the paper's 0.7)
    focal_gamma: float = 0.0  # 0 = plain cross-entropy
    focal: Focal = "sample"  # per-sample weights, or the paper's weight on the batch-mean CE

    def __post_init__(self) -> None:
        if not 0.0 <= self.cls_coef <= 1.0:
            raise ValueError(f"cls_coef must be in [0, 1], got {self.cls_coef}")
        if self.focal_gamma < 0:
            raise ValueError(f"focal_gamma must be >= 0, got {self.focal_gamma}")


def classification_loss(logits: Tensor, target: Tensor, gamma: float = LossConfig.focal_gamma,
                        reduction: str = "mean", focal: str = LossConfig.focal) -> Tensor:
    """Cross-entropy of ``logits`` (B, K) against ``target``: class indices (B,) or probabilities (B, K).

    ``gamma > 0`` adds the focal weight: per sample ``(1 - p_t)^gamma`` (``focal='sample'``), or
    ``(1 - exp(-CE_mean))^gamma`` on the batch mean (``focal='batch'``, only with reduction 'mean').
    ``reduction``: 'mean' | 'sum' | 'none' (per-sample values, shape (B,)).
    """
    if focal not in FOCAL_VARIANTS:
        raise ValueError(f"unknown focal variant {focal!r}; use one of {list(FOCAL_VARIANTS)}")
    log_p = F.log_softmax(logits, dim=-1)  # (B, K)
    if target.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
        # class targets: a one-hot distribution
        q = F.one_hot(target.long(), num_classes=logits.shape[-1]).to(log_p.dtype)
    else:
        q = target.to(log_p.dtype)
    ce = -(q * log_p).sum(dim=-1)  # (B,)
    if focal == "batch" and gamma:
        if reduction != "mean":
            raise ValueError("the batch focal loss is defined on the batch mean only (reduction='mean')")
        mean = ce.mean()
        return (1.0 - torch.exp(-mean)).pow(gamma) * mean
    if gamma:
        p_t = (q * log_p.exp()).sum(dim=-1).clamp(0.0, 1.0)
        ce = (1.0 - p_t).pow(gamma) * ce
    if reduction == "mean":
        return ce.mean()
    if reduction == "sum":
        return ce.sum()
    if reduction == "none":
        return ce
    raise ValueError(f"unknown reduction {reduction!r}")


def regression_loss(pred: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """MSE between predicted and rated (valence, arousal), both (B, 2); 'none' gives (B,) per-sample means."""
    se = (pred - target).pow(2).mean(dim=-1)  # (B,)
    if reduction == "mean":
        return se.mean()
    if reduction == "sum":
        return se.sum()
    if reduction == "none":
        return se
    raise ValueError(f"unknown reduction {reduction!r}")


@dataclass
class LossParts:
    loss: Tensor
    cls_loss: Tensor
    reg_loss: Tensor


def multitask_loss(
    output: Tensor,
    cls_target: Tensor,
    va_target: Tensor,
    cls_coef: float = LossConfig.cls_coef,
    gamma: float = LossConfig.focal_gamma,
    cls_mask: Tensor | None = None,
    focal: str = LossConfig.focal,
) -> LossParts:
    """The combined loss of a head's (B, classes + dimensions) output (:func:`erc.heads.split_output`).

    ``cls_target``: (B,) class indices or (B, classes) probabilities; ``va_target``: (B, dimensions),
    (B, 0) for a corpus without dimensions: then the loss is ``L_cls`` alone.
    ``cls_mask`` (B,) bool: samples that count towards ``L_cls`` (e.g. validation utterances with a
    unique majority); ``L_reg`` always uses every sample. An empty mask gives ``L_cls = 0``.
    """
    logits, va = split_output(output, va_target.shape[-1])
    if cls_mask is not None:
        logits, cls_target = logits[cls_mask], cls_target[cls_mask]
    cls = classification_loss(logits, cls_target, gamma, focal=focal) if logits.shape[0] else output.new_zeros(())
    if va_target.shape[-1] == 0:  # no dimensions: the classification loss alone
        return LossParts(cls, cls, output.new_zeros(()))
    reg = regression_loss(va, va_target)
    return LossParts(cls_coef * cls + (1.0 - cls_coef) * reg, cls, reg)

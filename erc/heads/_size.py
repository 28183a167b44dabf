"""A head's size, logged once per trial as ``model/params`` and ``model/flops`` (DESIGN §13).

- trainable parameters: every parameter with ``requires_grad`` (the normalisation's statistics are
  buffers, not counted; a layer mix's weights are);
- forward FLOPs per utterance: one eval-mode forward pass on a batch of one, counted by
  :class:`torch.utils.flop_counter.FlopCounterMode` — which counts matrix products and convolutions
  (2 FLOPs per multiply-add), not element-wise work, so the figure compares heads' matmul cost.

The inputs are zeros of the head's own input shapes (:meth:`erc.heads.BaseHead.example_inputs`); the
count depends on shapes only.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from erc.contract import MODEL_FLOPS, MODEL_PARAMS


def trainable_parameters(module: nn.Module) -> int:
    """The number of values the optimiser updates."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@torch.no_grad()
def forward_flops(head: nn.Module) -> int:
    """FLOPs of one forward pass of ``head`` on one utterance (eval mode; the head's mode is restored)."""
    was_training = head.training
    head.eval()
    try:
        a, t = head.example_inputs()
        with FlopCounterMode(display=False) as counter:
            head(a, t)
    finally:
        head.train(was_training)
    return int(counter.get_total_flops())


def model_size(head: nn.Module) -> dict[str, float]:
    """``{model/params: …, model/flops: …}`` — the metrics a trial logs (names: :mod:`erc.contract`)."""
    return {MODEL_PARAMS: float(trainable_parameters(head)), MODEL_FLOPS: float(forward_flops(head))}

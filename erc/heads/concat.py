"""``concat``: the concatenation head (DESIGN §5).

a' = W_a a,  t' = W_t t,  h = ReLU(W_h [a'; t']),  y = W_o h  (dropout between h and W_o).
It reads the shared keys only (:class:`~erc.heads._base.BaseConfig`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from erc.heads._base import BaseConfig, BaseHead, Dropout
from erc.layers import HeadInput, LayerConfig


class ConcatHead(BaseHead):
    """``[a'; t']`` (2P) → Linear(2P, P) → ReLU → Linear(P, outputs)."""

    Config = BaseConfig

    def __init__(self, *, config: BaseConfig, d_audio: int, d_text: int, layers: LayerConfig | None = None,
                 n_layers: tuple[int, int] = (0, 0)) -> None:
        super().__init__(config=config, d_audio=d_audio, d_text=d_text, layers=layers, n_layers=n_layers)
        p = config.proj_dim
        self.proj_audio = nn.Linear(d_audio, p)
        self.proj_text = nn.Linear(d_text, p)
        self.hidden = nn.Linear(2 * p, p)
        self.dropout = Dropout(config.dropout)
        self.out = nn.Linear(p, config.n_outputs)

    def embed(self, a: HeadInput, t: HeadInput) -> Tensor:
        a, t = self.norm.inputs(a, t)
        z = torch.cat([self.proj_audio(a), self.proj_text(t)], dim=1)  # (B, 2P)
        return torch.relu(self.hidden(z))  # (B, P): the embedding is taken after the ReLU

    def readout(self, h: Tensor) -> Tensor:
        # dropout sits between the embedding and the output layer, so embed() stays deterministic
        return self.out(self.dropout(h))


Head = ConcatHead

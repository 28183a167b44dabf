"""``tfn``: the Tensor Fusion Network (Zadeh et al., EMNLP 2017), the tensor mixer's ancestor (DESIGN §13).

a' = W_a a,  t' = W_t t  (P each),  z = vec([a'; 1] ⊗ [t'; 1])  ((P+1)² values: a' ⊗ t', a', t' and 1),
h = ReLU(W_2 ReLU(W_1 z)),  y = W_o h  (dropout between h and W_o).

TFN's post-fusion MLP (two hidden layers of the post-fusion width, here P) where ``outer`` puts an
MLP-Mixer. The constant 1 is part of TFN's definition, so ``append_one`` means nothing to this head.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from erc.heads._base import BaseConfig, BaseHead, Dropout
from erc.layers import HeadInput, LayerConfig
from erc.vocab import N_OUTPUTS


def with_one(x: Tensor) -> Tensor:
    """(B, n) → (B, n+1): ``[x; 1]``."""
    return torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)


class TensorFusionHead(BaseHead):
    Config = BaseConfig

    def __init__(self, *, config: BaseConfig, d_audio: int, d_text: int, layers: LayerConfig | None = None,
                 n_layers: tuple[int, int] = (0, 0)) -> None:
        super().__init__(config=config, d_audio=d_audio, d_text=d_text, layers=layers, n_layers=n_layers)
        p = config.proj_dim
        self.proj_audio = nn.Linear(d_audio, p)
        self.proj_text = nn.Linear(d_text, p)
        self.hidden1 = nn.Linear((p + 1) ** 2, p)
        self.hidden2 = nn.Linear(p, p)
        self.dropout = Dropout(config.dropout)
        self.out = nn.Linear(p, N_OUTPUTS)

    def fuse(self, a: HeadInput, t: HeadInput) -> Tensor:
        """(B, (P+1)²): vec([a'; 1] ⊗ [t'; 1]), row-major (index i·(P+1) + j = a'_i · t'_j)."""
        a, t = self.norm.inputs(a, t)
        a, t = with_one(self.proj_audio(a)), with_one(self.proj_text(t))
        return torch.einsum("bi,bj->bij", a, t).flatten(1)

    def embed(self, a: HeadInput, t: HeadInput) -> Tensor:
        return torch.relu(self.hidden2(torch.relu(self.hidden1(self.fuse(a, t)))))  # (B, P)

    def readout(self, h: Tensor) -> Tensor:
        return self.out(self.dropout(h))


Head = TensorFusionHead

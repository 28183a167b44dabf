"""``attention``: an attention-weighted sum of the projected modality vectors (MERBench's utterance-level
``Attention`` baseline) (DESIGN §13).

a' = W_a a,  t' = W_t t  (P each),  s = W_s ReLU(W_g [a'; t'])  (2 scores),  α = softmax(s),
z = α_audio a' + α_text t',  h = ReLU(W_h z),  y = W_o h  (dropout between h and W_o).

MERBench uses the raw scores as weights; here they are a softmax over the modalities, so α is a
distribution (what "attention-weighted" means, and what the report can read as each modality's share).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from erc.heads._base import BaseConfig, BaseHead, Dropout
from erc.layers import HeadInput, LayerConfig
from erc.vocab import MODALITIES, N_OUTPUTS


class AttentionHead(BaseHead):
    Config = BaseConfig

    def __init__(self, *, config: BaseConfig, d_audio: int, d_text: int, layers: LayerConfig | None = None,
                 n_layers: tuple[int, int] = (0, 0)) -> None:
        super().__init__(config=config, d_audio=d_audio, d_text=d_text, layers=layers, n_layers=n_layers)
        p = config.proj_dim
        self.proj_audio = nn.Linear(d_audio, p)
        self.proj_text = nn.Linear(d_text, p)
        self.gate_hidden = nn.Linear(2 * p, p)
        self.gate_scores = nn.Linear(p, len(MODALITIES))
        self.hidden = nn.Linear(p, p)
        self.dropout = Dropout(config.dropout)
        self.out = nn.Linear(p, N_OUTPUTS)

    def weights(self, a: HeadInput, t: HeadInput) -> tuple[Tensor, Tensor]:
        """(B, 2) attention weights (audio, text) and the (B, 2, P) projected vectors they weigh."""
        a, t = self.norm.inputs(a, t)
        projected = torch.stack([self.proj_audio(a), self.proj_text(t)], dim=1)  # (B, 2, P)
        scores = self.gate_scores(torch.relu(self.gate_hidden(projected.flatten(1))))
        return torch.softmax(scores, dim=1), projected

    def embed(self, a: HeadInput, t: HeadInput) -> Tensor:
        alpha, projected = self.weights(a, t)
        z = torch.einsum("bm,bmp->bp", alpha, projected)
        return torch.relu(self.hidden(z))  # (B, P)

    def readout(self, h: Tensor) -> Tensor:
        return self.out(self.dropout(h))


Head = AttentionHead

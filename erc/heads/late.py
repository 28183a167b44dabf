"""``late``: late fusion — an audio head and a text head, their outputs averaged (DESIGN §13).

y = (y_audio + y_text) / 2 with y_m = :class:`~erc.heads.audio.Branch` of modality m (the
``audio`` / ``text`` heads' own MLPs). The weight is a fixed ½, not learned: with a learned weight the
arm would also measure a gate, and the mean is MultiBench's plain late fusion. The mean is taken in
standard units; the de-standardisation is affine, so it is also the mean on the ratings' scale.
The embedding is both branches' hidden layers side by side, (B, 2P).
"""

from __future__ import annotations

import torch
from torch import Tensor

from erc.heads._base import BaseConfig, BaseHead
from erc.heads.audio import Branch
from erc.layers import HeadInput, LayerConfig


class LateHead(BaseHead):
    Config = BaseConfig

    def __init__(self, *, config: BaseConfig, d_audio: int, d_text: int, layers: LayerConfig | None = None,
                 n_layers: tuple[int, int] = (0, 0)) -> None:
        super().__init__(config=config, d_audio=d_audio, d_text=d_text, layers=layers, n_layers=n_layers)
        p, drop = config.proj_dim, config.dropout
        self.audio_branch = Branch(d_in=d_audio, proj_dim=p, dropout=drop)
        self.text_branch = Branch(d_in=d_text, proj_dim=p, dropout=drop)

    def embed(self, a: HeadInput, t: HeadInput) -> Tensor:
        a, t = self.norm.inputs(a, t)
        return torch.cat([self.audio_branch.embed(a), self.text_branch.embed(t)], dim=1)  # (B, 2P)

    def readout(self, h: Tensor) -> Tensor:
        h_audio, h_text = h.split(self.config.proj_dim, dim=1)
        return (self.audio_branch.readout(h_audio) + self.text_branch.readout(h_text)) / 2


Head = LateHead

"""``lmf``: Low-rank Multimodal Fusion (Liu et al., ACL 2018) (DESIGN §13).

a' = W_a a,  t' = W_t t  (P each),
h = Σ_{r=1..R} w_r · (A_r [a'; 1]) ⊙ (T_r [t'; 1]) + b  (P values; A_r, T_r: P × (P+1)),
y = W_o h  (dropout between h and W_o).

The rank-R factors stand in for TFN's (P+1)²-wide weight: W = Σ_r w_r A_r ⊗ T_r, without ever forming
[a'; 1] ⊗ [t'; 1]. The fused width is P and a final Linear maps it to the outputs (Liu et al. fuse
straight to the outputs; a linear map after a linear fusion adds no capacity, it keeps every head's
``embed`` → ``out`` layout). The factors of all ranks are one Linear per modality (P+1 → R·P, no bias),
the rank weights and b one Linear(R, 1), so the seeded initialisation covers them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from erc.heads._base import BaseConfig, BaseHead, Dropout
from erc.heads.tfn import with_one
from erc.layers import HeadInput, LayerConfig
from erc.vocab import N_OUTPUTS


@dataclass(frozen=True, kw_only=True)
class LowRankConfig(BaseConfig):
    """LMF's own key: the rank R of the factorised fusion weight (Liu et al. found 4 enough on
    CMU-MOSI/IEMOCAP; the same at both presets)."""

    PRESETS: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    rank: int = 4

    def validate(self) -> None:
        if self.rank < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")


class LowRankFusionHead(BaseHead):
    Config = LowRankConfig
    config: LowRankConfig

    def __init__(self, *, config: LowRankConfig, d_audio: int, d_text: int, layers: LayerConfig | None = None,
                 n_layers: tuple[int, int] = (0, 0)) -> None:
        super().__init__(config=config, d_audio=d_audio, d_text=d_text, layers=layers, n_layers=n_layers)
        p, r = config.proj_dim, config.rank
        self.proj_audio = nn.Linear(d_audio, p)
        self.proj_text = nn.Linear(d_text, p)
        self.audio_factors = nn.Linear(p + 1, r * p, bias=False)  # rows r·P … r·P+P-1: A_r
        self.text_factors = nn.Linear(p + 1, r * p, bias=False)
        self.rank_weights = nn.Linear(r, 1)  # w_r and b
        self.dropout = Dropout(config.dropout)
        self.out = nn.Linear(p, N_OUTPUTS)

    def embed(self, a: HeadInput, t: HeadInput) -> Tensor:
        a, t = self.norm.inputs(a, t)
        shape = (-1, self.config.rank, self.config.proj_dim)
        fa = self.audio_factors(with_one(self.proj_audio(a))).reshape(shape)  # (B, R, P)
        ft = self.text_factors(with_one(self.proj_text(t))).reshape(shape)
        return self.rank_weights((fa * ft).transpose(1, 2)).squeeze(2)  # Σ_r w_r (…) + b: (B, P)

    def readout(self, h: Tensor) -> Tensor:
        return self.out(self.dropout(h))


Head = LowRankFusionHead

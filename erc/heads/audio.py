"""``audio``: the audio-only baseline (DESIGN §13) — and :class:`Branch`, the one-modality MLP that
``text`` and ``late`` reuse.

a' = W_a a,  h = ReLU(W_h a'),  y = W_o h  (dropout between h and W_o).
The text input is not used at all: the head answers "how much does the text add?". It reads the shared
keys only (:class:`~erc.heads._base.BaseConfig`; ``append_one`` means nothing to it).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from erc.heads._base import BaseConfig, BaseHead, Dropout
from erc.layers import HeadInput, LayerConfig
from erc.vocab import MODALITIES, N_OUTPUTS


class Branch(nn.Module):
    """One modality's standardised vector (D) → Linear(D, P) → Linear(P, P) → ReLU → [dropout] → Linear(P, outputs).

    ``embed`` gives the post-ReLU hidden layer, ``readout`` the outputs in standard units (the same
    split as every head's ``embed`` / ``readout``).
    """

    def __init__(self, *, d_in: int, proj_dim: int, dropout: float) -> None:
        super().__init__()
        self.proj = nn.Linear(d_in, proj_dim)  # registered in draw order: proj, hidden, out
        self.hidden = nn.Linear(proj_dim, proj_dim)
        self.dropout = Dropout(dropout)
        self.out = nn.Linear(proj_dim, N_OUTPUTS)

    def embed(self, x: Tensor) -> Tensor:  # (B, D) -> (B, P)
        return torch.relu(self.hidden(self.proj(x)))

    def readout(self, h: Tensor) -> Tensor:  # (B, P) -> (B, outputs)
        return self.out(self.dropout(h))


class UnimodalHead(BaseHead):
    """A head that reads one modality (``modality``) through a :class:`Branch`; the other input is ignored."""

    Config = BaseConfig
    modality: ClassVar[str] = "audio"

    def __init__(self, *, config: BaseConfig, d_audio: int, d_text: int, layers: LayerConfig | None = None,
                 n_layers: tuple[int, int] = (0, 0)) -> None:
        super().__init__(config=config, d_audio=d_audio, d_text=d_text, layers=layers, n_layers=n_layers)
        d_in = dict(zip(MODALITIES, (d_audio, d_text), strict=True))[self.modality]
        self.branch = Branch(d_in=d_in, proj_dim=config.proj_dim, dropout=config.dropout)

    def embed(self, a: HeadInput, t: HeadInput) -> Tensor:
        # the unused modality still goes through the normalisation (cheap, and it keeps one code path);
        # its value never reaches the output
        x = dict(zip(MODALITIES, self.norm.inputs(a, t), strict=True))[self.modality]
        return self.branch.embed(x)

    def readout(self, h: Tensor) -> Tensor:
        return self.branch.readout(h)


class AudioHead(UnimodalHead):
    modality = "audio"


Head = AudioHead

"""``xattn``: cross-attention fusion over the encoders' token sequences — the original repository's
(one layer, multi-head, both directions) (DESIGN §13).

With â (B, N_a, D_a) the standardised audio frames, t̂ (B, N_t, D_t) the standardised text tokens and
m_a, m_t their masks (True at real positions):

a' = W_a â,  t' = W_t t̂  (P each),
ã = LN_a(a' + CA_a(a', t'; m_t)),   t̃ = LN_t(t' + CA_t(t', a'; m_a)),
CA(x, y; m) = W_o [head_1; …; head_H],  head_i = softmax(Q_i K_iᵀ / √d + M) V_i,
Q_i = x W_q^i,  K_i = y W_k^i,  V_i = y W_v^i  (d = P / H, ``xattn_heads`` = H),
M = −∞ (the dtype's lowest value) where m is False: a padded key gets no weight,
u = masked mean of ã over m_a,  v = masked mean of t̃ over m_t  (padding neither counts nor adds),
h = ReLU(W_h [u; v]),  y = W_o' h  (dropout between h and W_o').

Each direction is a transformer's cross-attention sublayer (residual + post-LayerNorm; no feed-forward),
audio queries reading text keys and text queries reading audio keys. The attention is written out
rather than ``nn.MultiheadAttention`` so every weight is an ``nn.Linear`` that
:meth:`~erc.heads._base.BaseHead.reset_parameters` draws from the run's generator (the test checks it
equals ``nn.MultiheadAttention`` with the same weights).

Inputs: :class:`erc.sequences.SeqBatch` per modality — in cached mode the sequence cache (last hidden
layer, float16, frames ≤ :data:`~erc.sequences.MAX_FRAMES` = 349, tokens ≤
:data:`~erc.sequences.MAX_TOKENS` = 128; at paper scale — wav2vec2-large / xlsr and klue/roberta-large,
D = 1024 — at most (349 + 128) × 1024 × 2 B ≈ 0.93 MiB per utterance, ¾ of that with the base
models; see :mod:`erc.sequences`), in finetune mode the encoders' outputs and masks
(:meth:`erc.finetune.EndToEnd.inputs`). Standardisation: per feature over every real position of the
training rows. ``model/flops`` counts one utterance at the caps (an upper bound).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from erc.heads._base import BaseConfig, BaseHead, Dropout
from erc.layers import LayerConfig
from erc.sequences import MAX_FRAMES, MAX_TOKENS, SeqBatch, SequenceRows, masked_mean


@dataclass(frozen=True, kw_only=True)
class XattnConfig(BaseConfig):
    """The cross-attention head's own key: its number of attention heads (P must be a multiple of it)."""

    PRESETS: ClassVar[Mapping[str, Mapping[str, Any]]] = {"paper": {"xattn_heads": 8}}

    xattn_heads: int = 2  # H: attention heads per direction

    def validate(self) -> None:
        if self.xattn_heads < 1:
            raise ValueError(f"xattn_heads must be >= 1, got {self.xattn_heads}")
        if self.proj_dim % self.xattn_heads:
            raise ValueError(f"proj_dim ({self.proj_dim}) must be a multiple of xattn_heads ({self.xattn_heads})")


class CrossAttention(nn.Module):
    """Multi-head attention of queries ``x`` (B, N_x, P) over keys/values ``y`` (B, N_y, P), masked by
    ``y_mask`` (B, N_y): (B, N_x, P)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)  # registered in draw order: query, key, value, out
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, N, P) → (B, H, N, d): head i holds features i·d … (i+1)·d − 1."""
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def weights(self, x: Tensor, y: Tensor, y_mask: Tensor) -> Tensor:
        """(B, H, N_x, N_y) attention weights: each query's distribution over the real keys."""
        q, k = self.split_heads(self.query(x)), self.split_heads(self.key(y))  # (B, H, N_x, d), (B, H, N_y, d)
        scores = torch.einsum("bhnd,bhmd->bhnm", q, k) / math.sqrt(q.shape[-1])  # (B, H, N_x, N_y)
        # the lowest finite value, not −inf: exp underflows to exactly 0 all the same, and no row is NaN
        scores = scores.masked_fill(~y_mask[:, None, None, :], torch.finfo(scores.dtype).min)
        return torch.softmax(scores, dim=-1)

    def forward(self, x: Tensor, y: Tensor, y_mask: Tensor) -> Tensor:
        v = self.split_heads(self.value(y))  # (B, H, N_y, d)
        heads = torch.einsum("bhnm,bhmd->bhnd", self.weights(x, y, y_mask), v)  # (B, H, N_x, d)
        return self.out(heads.transpose(1, 2).flatten(2))  # [head_1; …; head_H]: (B, N_x, P)


class XattnHead(BaseHead):
    Config = XattnConfig
    reads_sequences = True

    def __init__(self, *, config: XattnConfig, d_audio: int, d_text: int, layers: LayerConfig | None = None,
                 n_layers: tuple[int, int] = (0, 0)) -> None:
        super().__init__(config=config, d_audio=d_audio, d_text=d_text, layers=layers, n_layers=n_layers)
        if self.layers.needs_stack:
            raise ValueError("xattn reads the last layer's sequences: audio_layer and text_layer must be 'last'")
        p, heads = config.proj_dim, config.xattn_heads
        self.proj_audio = nn.Linear(d_audio, p)
        self.proj_text = nn.Linear(d_text, p)
        self.audio_from_text = CrossAttention(p, heads)  # audio queries, text keys
        self.text_from_audio = CrossAttention(p, heads)  # text queries, audio keys
        self.norm_audio = nn.LayerNorm(p)
        self.norm_text = nn.LayerNorm(p)
        self.hidden = nn.Linear(2 * p, p)
        self.dropout = Dropout(config.dropout)
        self.out = nn.Linear(p, config.n_outputs)

    def standardised(self, a: SeqBatch, t: SeqBatch) -> tuple[Tensor, Tensor]:
        """(B, N_a, D_a), (B, N_t, D_t): every position standardised with the training statistics."""
        n = self.norm
        return (a.values - n.audio_mean) / n.audio_std, (t.values - n.text_mean) / n.text_std

    def embed(self, a: SeqBatch, t: SeqBatch) -> Tensor:  # type: ignore[override]
        a_hat, t_hat = self.standardised(a, t)
        a_proj, t_proj = self.proj_audio(a_hat), self.proj_text(t_hat)  # (B, N_a, P), (B, N_t, P)
        a_att = self.norm_audio(a_proj + self.audio_from_text(a_proj, t_proj, t.mask))  # (B, N_a, P)
        t_att = self.norm_text(t_proj + self.text_from_audio(t_proj, a_proj, a.mask))  # (B, N_t, P)
        z = torch.cat([masked_mean(a_att, a.mask), masked_mean(t_att, t.mask)], dim=1)  # (B, 2P)
        return torch.relu(self.hidden(z))  # (B, P)

    def readout(self, h: Tensor) -> Tensor:
        return self.out(self.dropout(h))

    def example_inputs(self, batch: int = 1) -> tuple[SeqBatch, SeqBatch]:  # type: ignore[override]
        """Zero sequences at the caps (every position real): ``model/flops`` is the per-utterance upper bound."""
        device = next(self.parameters()).device

        def full(n: int, dim: int) -> SeqBatch:
            return SeqBatch(torch.zeros(batch, n, dim, device=device), torch.ones(batch, n, dtype=torch.bool,
                                                                                   device=device))
        return full(MAX_FRAMES, self.d_audio), full(MAX_TOKENS, self.d_text)

    def fit_normalisation(self, audio: Any, text: Any, va: Tensor) -> None:
        """Per-feature statistics over every real position of the training rows (not over padding)."""
        stats = []
        for x in (audio, text):
            if isinstance(x, SequenceRows):
                stats += [torch.from_numpy(s) for s in x.sequences.mean_std()]
            else:  # a SeqBatch (a caller's own padded rows)
                real = x.values[x.mask].float()  # (positions, D)
                stats += [real.mean(0), real.std(0)]
        target = (va.mean(0), va.std(0)) if va.shape[-1] else (va.new_zeros(0), va.new_ones(0))
        self.norm.set_stats(*stats, *target)


Head = XattnHead

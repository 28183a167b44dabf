"""A head's outputs for feature rows, and reloading a trained head from its checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from erc.config import RunConfig
from erc.heads import BaseHead, from_state_dict, split_output
from erc.layers import HeadInput, head_input_of
from erc.table import FeatureTable
from erc.vocab import DIMENSIONS


@dataclass(frozen=True)
class Predictions:
    """A head's outputs for N utterances, beside what they are compared with."""

    segment_id: np.ndarray  # (N,) str
    logits: np.ndarray  # (N, classes) float32
    va_pred: np.ndarray  # (N, dimensions) predicted valence, arousal on the 1–5 scale; (N, 0) without them
    majority: np.ndarray  # (N,) unique majority class, -1 for a tie
    va: np.ndarray  # (N, dimensions) rated valence, arousal

    @classmethod
    def of(cls, rows: FeatureTable, output: Tensor | np.ndarray) -> Predictions:
        out = output.detach().cpu().numpy() if isinstance(output, Tensor) else np.asarray(output)
        va = rows.va
        return cls(rows.segment_id, *split_output(out, va.shape[-1]), rows.majority, va)

    @property
    def output(self) -> np.ndarray:  # (N, outputs): the head's raw output layout
        return np.concatenate([self.logits, self.va_pred], axis=1)

    def to_frame(self) -> pd.DataFrame:
        """One row per utterance (logits as a list per row), e.g. for a JSON-lines artifact."""
        dims = DIMENSIONS[:self.va.shape[-1]]  # none for a corpus without dimensions
        return pd.DataFrame({
            "segment_id": self.segment_id,
            "logits": list(self.logits),
            "target": self.majority,
            **{f"{d}_pred": self.va_pred[:, i] for i, d in enumerate(dims)},
            **{d: self.va[:, i] for i, d in enumerate(dims)},
        })


def device_of(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def forward(head: BaseHead, audio: HeadInput, text: HeadInput, *, embed: bool = False,
            chunk: int = 1024) -> tuple[Tensor, Tensor | None]:
    """Eval-mode outputs (N, outputs) and, with ``embed``, embeddings (N, E), in chunks to bound memory."""
    was_training = head.training
    head.eval()
    outs, embs = [], []
    for i in range(0, audio.shape[0], chunk):
        a, t = audio[i : i + chunk], text[i : i + chunk]
        if embed:
            y, e = head(a, t, return_embedding=True)
            outs.append(y)
            embs.append(e)
        else:
            outs.append(head(a, t))
    head.train(was_training)
    out = torch.cat(outs) if outs else torch.zeros(0, head.config.n_outputs, device=next(head.parameters()).device)
    return out, (torch.cat(embs) if embs else None) if embed else None


def load_head(config: RunConfig | Mapping[str, Any], state_dict: Mapping[str, Tensor]) -> BaseHead:
    """Rebuild a trained head (eval mode, CPU) from its config and ``FitResult.state_dict``.

    Input sizes come from the saved normalisation buffers (and layer mixes), so nothing else needs storing.
    """
    if not isinstance(config, RunConfig):
        config = RunConfig.from_flat(config)
    return from_state_dict(config.head, state_dict, layers=config.layers)


def predict(head: BaseHead, rows: FeatureTable, *, device: str = "auto",
            return_embeddings: bool = False) -> tuple[Predictions, np.ndarray | None]:
    """The head's predictions for ``rows`` and, with ``return_embeddings``, the (N, E) inputs of its
    final Linear (the "last hidden layer" the embedding figure reduces)."""
    dev = device_of(device)
    head = head.to(dev)
    # the encoder layer(s) the head was trained on (build_head records them)
    audio, text = head_input_of(head, rows, head.layers, dev)
    out, emb = forward(head, audio, text, embed=return_embeddings)
    return Predictions.of(rows, out), (emb.cpu().numpy() if emb is not None else None)

"""The encoders' last-layer token sequences, for heads that attend over frames and tokens (``xattn``).

A *sequence cache* (built by :func:`erc.features.sequences.build_sequences`, once per corpus and
encoder pair, like the layer stacks) keeps every utterance's last hidden states — the wav2vec2 frames
(20 ms each) over its valid samples, the RoBERTa tokens (``<s>`` … ``</s>``) of its transcript —
capped at :data:`MAX_FRAMES` frames and :data:`MAX_TOKENS` tokens. They are stored ragged, not padded:
``audio_seq.npy`` (total frames, D_a) and ``text_seq.npy`` (total tokens, D_t), float16, with
``<modality>_seq_offsets.npy`` (N + 1,) int64 row boundaries, so an utterance costs what it holds.

Size per utterance at paper scale (wav2vec2-large / xlsr and klue/roberta-large, D = 1024 each,
float16): at most (349 + 128) × 1024 × 2 B ≈ 0.93 MiB (the caps); a 3 s utterance with 30 tokens,
(149 + 30) × 2 KiB ≈ 0.35 MiB. With wav2vec2-base / klue/roberta-base (D = 768): ¾ of that.

Memory: the files are memory-mapped read-only; :class:`Sequences` is a row view over them (a fold split
composes row indices, never copies), and :class:`SequenceRows` gathers one batch's rows at a time,
padded to the batch's longest, as a :class:`SeqBatch` (values and a mask of the real positions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from erc.vocab import MODALITIES

# 7 s (the paper's crop, erc.audio.MAX_SECONDS) of 16 kHz audio through wav2vec2's conv stack
# (receptive field 400 samples, stride 320) gives 349 frames: the cap never cuts a cropped utterance
MAX_FRAMES = 349
# KEMDy's transcripts are one short sentence: the cap bounds a stray long one, not the typical one
MAX_TOKENS = 128
SEQUENCE_FILES = {m: f"{m}_seq.npy" for m in MODALITIES}
OFFSET_FILES = {m: f"{m}_seq_offsets.npy" for m in MODALITIES}
_CHUNK = 256  # rows per step when a statistic runs over a whole view (bounds the float copy)


@dataclass(frozen=True)
class SeqBatch:
    """A padded batch of sequences: ``values`` (B, N, D) and ``mask`` (B, N), True at real positions."""

    values: Tensor
    mask: Tensor

    @property
    def shape(self) -> torch.Size:
        return self.values.shape

    def __getitem__(self, index: Any) -> SeqBatch:
        return SeqBatch(self.values[index], self.mask[index])

    def float(self) -> SeqBatch:
        return SeqBatch(self.values.float(), self.mask)

    def with_values(self, values: Tensor) -> SeqBatch:
        """The same positions holding other values (a perturbed or standardised batch)."""
        return SeqBatch(values, self.mask)


def pad(parts: Sequence[np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Ragged (n_i, D) arrays → (B, max n_i, D) float32 zero-padded and the (B, max n_i) bool mask."""
    width = max((len(p) for p in parts), default=0)
    values = np.zeros((len(parts), width, dim), np.float32)
    mask = np.zeros((len(parts), width), bool)
    for k, part in enumerate(parts):
        values[k, :len(part)] = part
        mask[k, :len(part)] = True
    return values, mask


class Sequences:
    """Rows of a ragged sequence store as a view: ``values`` (total, D) and ``offsets`` (M + 1,) are the
    whole cache's (memory-mapped, or a read-only view of Ray's object store); ``rows`` this view's rows."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray, rows: np.ndarray | None = None) -> None:
        if values.ndim != 2 or offsets.ndim != 1 or offsets[-1] != len(values):
            raise ValueError(f"a sequence store is (total, dim) values with (N + 1,) offsets ending at the total, "
                             f"got {values.shape} and {offsets.shape}")
        self.values, self.offsets = values, offsets
        self.rows = np.arange(len(offsets) - 1) if rows is None else np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])

    @property
    def lengths(self) -> np.ndarray:  # (N,) positions of each row
        return self.offsets[self.rows + 1] - self.offsets[self.rows]

    def __getitem__(self, index: Any) -> Sequences:
        return Sequences(self.values, self.offsets, self.rows[np.asarray(index)])

    def parts(self, index: np.ndarray | Sequence[int] | slice) -> list[np.ndarray]:
        """The view's rows ``index``, each its own (n_i, D) array (a view of the store)."""
        return [self.values[self.offsets[r]:self.offsets[r + 1]] for r in self.rows[index]]

    def take(self, index: np.ndarray | Sequence[int] | slice) -> tuple[np.ndarray, np.ndarray]:
        """(k, N, D) float32 padded to the longest of the rows ``index``, and the (k, N) mask."""
        return pad(self.parts(index), self.dim)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature mean and (unbiased) std over every real position of the view's rows, (D,) each.

        Sums in float64 over chunks of rows: the store is never converted whole.
        """
        total, squares, count = np.zeros(self.dim), np.zeros(self.dim), 0
        for start in range(0, len(self.rows), _CHUNK):
            chunk = np.concatenate(self.parts(slice(start, start + _CHUNK))).astype(np.float64)
            total += chunk.sum(0)
            squares += (chunk ** 2).sum(0)
            count += len(chunk)
        mean = total / max(count, 1)
        var = (squares - count * mean ** 2) / max(count - 1, 1)
        return mean.astype(np.float32), np.sqrt(np.maximum(var, 0.0)).astype(np.float32)


def open_sequences(directory: str | Path) -> dict[str, Sequences]:
    """The sequence stores a cache directory holds, memory-mapped read-only (empty if none)."""
    found = {}
    for modality in MODALITIES:
        path, offsets = Path(directory) / SEQUENCE_FILES[modality], Path(directory) / OFFSET_FILES[modality]
        if path.is_file() and offsets.is_file():
            # asarray: a plain ndarray over the mapping, which Ray's serialiser hands over zero-copy
            found[modality] = Sequences(np.asarray(np.load(path, mmap_mode="r")), np.load(offsets))
    return found


class SequenceRows:
    """Stands in for the padded (N, N_max, D) tensor of a :class:`Sequences` view on ``device``:
    indexing with a tensor of positions or a slice gathers just those rows as a :class:`SeqBatch`."""

    def __init__(self, sequences: Sequences, device: torch.device) -> None:
        self.sequences, self.device = sequences, device

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def shape(self) -> torch.Size:
        longest = int(self.sequences.lengths.max(initial=0))
        return torch.Size((len(self.sequences), longest, self.sequences.dim))

    def __getitem__(self, index: Tensor | slice) -> SeqBatch:
        rows = index if isinstance(index, slice) else index.detach().cpu().numpy()
        values, mask = self.sequences.take(rows)
        return SeqBatch(torch.from_numpy(values).to(self.device), torch.from_numpy(mask).to(self.device))


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """(B, N, D), (B, N) → (B, D): the mean over the real positions only (padding neither counts nor adds)."""
    weights = mask.to(x.dtype).unsqueeze(-1)  # (B, N, 1)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


__all__ = ["MAX_FRAMES", "MAX_TOKENS", "OFFSET_FILES", "SEQUENCE_FILES", "SeqBatch", "SequenceRows", "Sequences",
           "masked_mean", "open_sequences", "pad"]

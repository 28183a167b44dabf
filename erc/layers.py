"""Every hidden layer of the frozen encoders: which one a head reads, or a learned mix (DESIGN §11).

A feature cache built with ``layers="all"`` (:func:`erc.features.build_features`) keeps, beside the
last layer's float32 vectors that every head reads by default, one pooled vector per hidden layer
and utterance: ``audio_layers.npy`` (N, L_a, D_a) and ``text_layers.npy`` (N, L_t, D_t), float16
(float32 only if a value overflows float16). Layer 0 is the embedding output (the first transformer
layer's input), layer L-1 the last layer: the encoders' ``hidden_states``. Audio layers are pooled
like the last layer (mean over valid frames), text layers likewise (first token).

Which layer a run reads is a config key per modality (:class:`LayerConfig`): ``audio_layer`` /
``text_layer`` = ``"last"`` (the float32 last-layer vectors: exactly the run without the stack), a
layer index (Python style: -1 is the last layer, read from the float16 stack), or ``"weighted"``:
each layer standardised on the training rows, then a softmax-weighted sum with learned weights
(:class:`LayerMix`; the SUPERB protocol for frozen encoders).

Memory: at paper scale the stacks are several GB, so they are never copied per trial. The cache
files are memory-mapped; :class:`Layers` is a row view over the one shared array (a fold split
composes row indices), and the trainer gathers a batch's rows at a time (:class:`LayerRows`). Through
Ray the array travels once per node in the object store and each trial maps it read-only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from erc.sequences import SequenceRows
from erc.vocab import MODALITIES

if TYPE_CHECKING:
    from erc.table import FeatureTable

LayerChoice = int | Literal["last", "weighted"]
# the stack files in a feature cache directory, by modality
LAYER_FILES = {"audio": "audio_layers.npy", "text": "text_layers.npy"}
# rows gathered per step when a statistic runs over a whole stack (bounds the float32 copy)
_CHUNK = 256


@dataclass(frozen=True, kw_only=True)
class LayerConfig:
    """Which encoder layer each modality's head input comes from (see the module docstring)."""

    audio_layer: LayerChoice = "last"
    text_layer: LayerChoice = "last"

    def choice(self, modality: str) -> LayerChoice:
        return self.audio_layer if modality == "audio" else self.text_layer

    @property
    def needs_stack(self) -> bool:
        """Whether any modality reads the every-layer stack (a cache built with ``layers="all"``)."""
        return any(self.choice(m) != "last" for m in MODALITIES)


# --------------------------------------------------------------------------------------------------
# the stored stacks


class Layers:
    """Rows of an (M, L, D) stack of per-layer vectors, as a view: the shared array is never copied.

    ``values`` is the whole cache's stack (memory-mapped, or a read-only view of Ray's object store
    inside a trial); ``rows`` are this view's rows of it. Indexing returns another view.
    """

    def __init__(self, values: np.ndarray, rows: np.ndarray | None = None) -> None:
        if values.ndim != 3:
            raise ValueError(f"a layer stack is (N, layers, dim), got shape {values.shape}")
        self.values = values
        self.rows = np.arange(len(values)) if rows is None else np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.rows), *self.values.shape[1:])

    @property
    def n_layers(self) -> int:
        return int(self.values.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    def __getitem__(self, index: Any) -> Layers:
        return Layers(self.values, self.rows[np.asarray(index)])

    def take(self, index: np.ndarray | Sequence[int] | slice) -> np.ndarray:
        """(k, L, D) float32 copy of the view's rows ``index``."""
        return self.values[self.rows[index]].astype(np.float32)

    def layer(self, index: int) -> np.ndarray:
        """(N, D) float32: one layer (Python-style index) of every row."""
        if not -self.n_layers <= index < self.n_layers:
            raise IndexError(f"layer {index} of a stack of {self.n_layers} (0..{self.n_layers - 1}, or negative)")
        return self.values[self.rows, index].astype(np.float32)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-layer, per-feature mean and (unbiased) std over the rows, each (L, D) float32.

        Two passes in float64 over chunks of rows: the stack is never converted whole.
        """
        n = len(self.rows)
        total = np.zeros(self.values.shape[1:], np.float64)
        for start in range(0, n, _CHUNK):
            total += self.values[self.rows[start:start + _CHUNK]].sum(0, dtype=np.float64)
        mean = total / max(n, 1)
        squares = np.zeros_like(mean)
        for start in range(0, n, _CHUNK):
            squares += ((self.values[self.rows[start:start + _CHUNK]] - mean) ** 2).sum(0)
        return mean.astype(np.float32), np.sqrt(squares / max(n - 1, 1)).astype(np.float32)


def open_layers(directory: str | Path) -> dict[str, Layers]:
    """The stacks a cache directory holds, memory-mapped read-only (empty for a last-layer cache)."""
    found = {}
    for modality, name in LAYER_FILES.items():
        path = Path(directory) / name
        if path.is_file():
            # asarray: a plain ndarray over the mapping, which Ray's serialiser hands over zero-copy
            found[modality] = Layers(np.asarray(np.load(path, mmap_mode="r")))
    return found


# --------------------------------------------------------------------------------------------------
# head inputs


class LayerRows:
    """Stands in for the (N, L, D) float32 tensor of a :class:`Layers` view on ``device``.

    Indexing with a tensor of positions or a slice gathers just those rows, so a trainer holds a
    batch of the stack at a time rather than its training rows' copy.
    """

    def __init__(self, layers: Layers, device: torch.device) -> None:
        self.layers, self.device = layers, device

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def shape(self) -> torch.Size:
        return torch.Size(self.layers.shape)

    def __getitem__(self, index: Tensor | slice) -> Tensor:
        rows = index if isinstance(index, slice) else index.detach().cpu().numpy()
        return torch.from_numpy(self.layers.take(rows)).to(self.device)


HeadInput = Tensor | LayerRows | SequenceRows


def _modality_input(rows: FeatureTable, modality: str, choice: LayerChoice, device: torch.device) -> HeadInput:
    if choice == "last":
        return torch.as_tensor(getattr(rows, modality), device=device)
    stack: Layers | None = getattr(rows, f"{modality}_layers")
    if stack is None:
        raise ValueError(f"{modality}_layer={choice!r} reads every encoder layer, but these features hold the last "
                         "layer only: build the feature cache with layers='all' (--layers all)")
    if choice == "weighted":
        return LayerRows(stack, device)
    try:
        return torch.as_tensor(stack.layer(int(choice)), device=device)
    except IndexError as err:
        raise ValueError(f"{modality}_layer={choice}: {err}") from None


def head_inputs(rows: FeatureTable, layers: LayerConfig, device: torch.device, *,
                sequences: bool = False) -> tuple[HeadInput, HeadInput]:
    """(audio, text) as the head reads them: (N, D) tensors, or :class:`LayerRows` for ``weighted``;
    with ``sequences`` (a head that reads them, ``xattn``) the last layer's token sequences
    (:class:`erc.sequences.SequenceRows`)."""
    if sequences:
        return _sequence_input(rows, "audio", device), _sequence_input(rows, "text", device)
    return (_modality_input(rows, "audio", layers.audio_layer, device),
            _modality_input(rows, "text", layers.text_layer, device))


def _sequence_input(rows: FeatureTable, modality: str, device: torch.device) -> SequenceRows:
    found = getattr(rows, f"{modality}_seq", None)
    if found is None:
        raise ValueError(f"this head reads {modality} token sequences, and these features hold pooled vectors "
                         "only: attach a sequence cache (erc.features.build_sequences; FeatureTable.with_sequences)")
    return SequenceRows(found, device)


def head_input_of(head: Any, rows: FeatureTable, layers: LayerConfig,
                  device: torch.device) -> tuple[HeadInput, HeadInput]:
    """:func:`head_inputs` of the kind ``head`` (a head or its class) reads: vectors or sequences."""
    return head_inputs(rows, layers, device, sequences=bool(getattr(head, "reads_sequences", False)))


def n_layers(x: HeadInput) -> int:
    """Layers a head input mixes (0 for a single layer's vectors)."""
    return x.shape[1] if isinstance(x, LayerRows) else 0


class LayerMix(nn.Module):
    """Softmax-weighted sum of standardised layers: (B, L, D) → (B, D) (SUPERB's weighted sum).

    Every layer is standardised with its own training statistics first: hidden-state scales differ by
    orders of magnitude across a wav2vec2's layers, and unscaled the loudest layer would dominate
    whatever the weights. The weights start equal (logits 0).
    """

    def __init__(self, n_layers: int, dim: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_layers))
        self.register_buffer("mean", torch.zeros(n_layers, dim))
        self.register_buffer("std", torch.ones(n_layers, dim))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.logits.zero_()

    @torch.no_grad()
    def set_stats(self, mean: Tensor, std: Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))  # a constant feature: std 1

    def weights(self) -> Tensor:
        return torch.softmax(self.logits, dim=0)

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("l,bld->bd", self.weights(), (x - self.mean) / self.std)


def layer_weights(source: nn.Module | Mapping[str, Tensor]) -> dict[str, list[float]]:
    """Deprecated here: :func:`erc.heads.layer_weights` (a head's own keys are read by the head)."""
    from erc.heads import layer_weights as of_head  # erc.heads builds on this module: import when called

    return of_head(source)

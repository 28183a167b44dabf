"""The frozen encoders (DESIGN §4): each turns a batch of utterances into one pooled vector per utterance.

* audio: a wav2vec2-style model (``AutoModel`` + ``AutoFeatureExtractor``); the vector is the mean of
  the last hidden states over the valid (unpadded) frames;
* text: a RoBERTa-style model (``AutoModel`` + ``AutoTokenizer``); the vector is the last hidden
  state of the first token (``<s>``/``[CLS]``).

Each wraps a loaded Hugging Face model (:mod:`erc.encoders.load`) and carries its ``identity``
(:mod:`erc.encoders.identity`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from erc.encoders.identity import AUDIO_POOLING, TEXT_POOLING, state_identity


def as_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _model_state(model: Any) -> dict[str, Any]:
    """A model as its class, config and weights: what pickling an encoder sends.

    A model object itself does not pickle (wav2vec2's positional convolution is a weight-norm
    parametrisation, which torch refuses to pickle); rebuilding it from these gives the same weights.
    """
    return {"cls": type(model), "config": model.config,
            "weights": {k: v.detach().cpu() for k, v in model.state_dict().items()}}


def _rebuild_model(state: dict[str, Any]) -> Any:
    model = state["cls"](state["config"])
    model.load_state_dict(state["weights"])
    return model.eval()


class _Picklable:
    """Pickles an encoder as its model's class, config and weights (see :func:`_model_state`); it
    unpickles on the CPU."""

    model: Any

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k != "model"}
        return {**state, "model": _model_state(self.model), "device": torch.device("cpu")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({**state, "model": _rebuild_model(state["model"])})


@dataclass
class AudioEncoder(_Picklable):
    """A frozen audio model + its feature extractor; ``pool(waves)`` → (B, D) float32 vectors."""

    model: Any
    feature_extractor: Any
    identity: str
    name: str = ""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        self.model.eval().to(self.device)
        # Padding only leaves valid frames untouched when the conv stack normalises per frame
        # ("layer"); a GroupNorm stack ("group", e.g. wav2vec2-base) normalises over time, so
        # padded samples would change every frame. Such models run one utterance at a time.
        self.batchable = getattr(self.model.config, "feat_extract_norm", "layer") == "layer"
        self.sample_rate = int(getattr(self.feature_extractor, "sampling_rate", 16000))
        # Shortest input that yields one frame (the conv receptive field, 400 samples for wav2vec2).
        self.min_samples = 1
        if hasattr(self.model, "_get_feat_extract_output_lengths"):
            while int(self.model._get_feat_extract_output_lengths(torch.tensor(self.min_samples))) < 1:
                self.min_samples += 1

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def to(self, device: str | torch.device) -> AudioEncoder:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    @classmethod
    def from_model(cls, model: Any, feature_extractor: Any, device: str | torch.device | None = None,
                   name: str = "in-memory") -> AudioEncoder:
        """Wrap a model built in memory; its identity hashes config, extractor settings and weights."""
        extra = {"config": model.config.to_dict(), "fe": feature_extractor.to_dict(), "pool": AUDIO_POOLING}
        return cls(model, feature_extractor, state_identity(model, extra), name, as_device(device))

    def frame_mask(self, attention_mask: torch.Tensor, n_frames: int) -> torch.Tensor:
        """(B, n_frames) bool mask of the output frames computed from unpadded samples only."""
        if hasattr(self.model, "_get_feature_vector_attention_mask"):
            return self.model._get_feature_vector_attention_mask(n_frames, attention_mask).bool()
        lengths = self.model._get_feat_extract_output_lengths(attention_mask.sum(-1))
        return torch.arange(n_frames, device=attention_mask.device)[None, :] < lengths[:, None]

    @property
    def n_layers(self) -> int:
        """Hidden states a forward pass yields: the embedding output and one per transformer layer."""
        return int(self.model.config.num_hidden_layers) + 1

    def pool(self, waves: Sequence[np.ndarray], pad_to: int | None = None) -> np.ndarray:
        """Mean of the last hidden state over each utterance's valid frames.

        ``waves`` are 1-D float arrays at ``sample_rate``. They are padded to the longest one (or to
        ``pad_to`` samples) with an attention mask, so the result does not depend on the batch.
        """
        return self._pool(waves, pad_to, False)[0]

    def pool_layers(self, waves: Sequence[np.ndarray], pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(B, D) vectors exactly as :meth:`pool` gives them, and (B, L, D): every hidden state
        (embedding output first, last layer last) pooled the same way."""
        last, stack = self._pool(waves, pad_to, True)
        assert stack is not None
        return last, stack

    def sequences(self, waves: Sequence[np.ndarray], max_frames: int | None = None) -> list[np.ndarray]:
        """Each utterance's last hidden states over its valid frames, (n_i, D) float32, the first
        ``max_frames`` of them (the sequence cache, :mod:`erc.sequences`; :meth:`pool` is their mean)."""
        waves = self._padded_min(waves)
        if not self.batchable and len(waves) > 1:
            return [s for w in waves for s in self.sequences([w], max_frames)]
        out, frames = self._forward(waves, None, False)
        hidden = out.last_hidden_state.float().cpu().numpy()
        counts = frames.sum(1).cpu().numpy().astype(int)
        return [hidden[k, :counts[k]][:max_frames] for k in range(len(waves))]  # valid frames come first

    def _padded_min(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [w if len(w) >= self.min_samples else np.pad(w, (0, self.min_samples - len(w))) for w in waves]

    @torch.inference_mode()
    def _forward(self, waves: Sequence[np.ndarray], pad_to: int | None, layers: bool) -> tuple[Any, torch.Tensor]:
        """The model's output for a batch, and the (B, frames) mask of its valid frames."""
        padding: dict[str, Any] = {"padding": True}
        if pad_to is not None:
            padding = {"padding": "max_length", "max_length": max(pad_to, max(len(w) for w in waves))}
        inputs = self.feature_extractor(list(waves), sampling_rate=self.sample_rate, return_tensors="pt",
                                        return_attention_mask=True, **padding)
        values = inputs["input_values"].to(self.device)
        mask = inputs["attention_mask"].to(self.device)
        # Group-norm models are trained without attention masks (HF docs); one unpadded utterance
        # needs none anyway.
        out = self.model(values, attention_mask=mask if self.batchable else None, output_hidden_states=layers)
        return out, self.frame_mask(mask, out.last_hidden_state.shape[1])

    @torch.inference_mode()
    def _pool(self, waves: Sequence[np.ndarray], pad_to: int | None,
              layers: bool) -> tuple[np.ndarray, np.ndarray | None]:
        waves = self._padded_min(waves)
        if not self.batchable and len(waves) > 1:
            parts = [self._pool([w], None, layers) for w in waves]
            return (np.concatenate([p[0] for p in parts]),
                    np.concatenate([p[1] for p in parts]) if layers else None)
        out, valid = self._forward(waves, pad_to, layers)
        hidden = out.last_hidden_state
        frames = valid.unsqueeze(-1).to(hidden.dtype)
        count = frames.sum(1).clamp(min=1.0)
        pooled = (hidden * frames).sum(1) / count
        stack = None
        if layers:  # one layer at a time: never a (B, L, T, D) tensor
            stack = torch.stack([(h * frames).sum(1) / count for h in _hidden_states(out)], dim=1)
            stack = stack.float().cpu().numpy()
        return pooled.float().cpu().numpy(), stack


@dataclass
class TextEncoder(_Picklable):
    """A frozen text model + its tokenizer; ``pool(texts)`` → (B, D) float32 first-token vectors."""

    model: Any
    tokenizer: Any
    identity: str
    name: str = ""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        self.model.eval().to(self.device)
        # Longest input the position table holds: RoBERTa offsets positions by padding_idx + 1,
        # so 514 positions hold 512 tokens; the tokenizer may state a smaller limit.
        positions = int(getattr(self.model.config, "max_position_embeddings", 512))
        if getattr(self.model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
            positions -= int(getattr(self.model.config, "pad_token_id", 1) or 0) + 1
        limit = getattr(self.tokenizer, "model_max_length", None) or positions
        self.max_length = int(min(positions, limit))

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def to(self, device: str | torch.device) -> TextEncoder:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, device: str | torch.device | None = None,
                   name: str = "in-memory") -> TextEncoder:
        """Wrap a model built in memory; its identity hashes config, tokenizer vocabulary and weights."""
        extra = {"config": model.config.to_dict(), "vocab": sorted(tokenizer.get_vocab().items()),
                 "pool": TEXT_POOLING}
        return cls(model, tokenizer, state_identity(model, extra), name, as_device(device))

    @property
    def n_layers(self) -> int:
        """Hidden states a forward pass yields: the embedding output and one per transformer layer."""
        return int(self.model.config.num_hidden_layers) + 1

    def pool(self, texts: Sequence[str]) -> np.ndarray:
        """Hidden state of the first token of each text (truncated to ``max_length`` tokens)."""
        return self._pool(texts, False)[0]

    def pool_layers(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(B, D) vectors exactly as :meth:`pool` gives them, and (B, L, D): the first token's state
        in every hidden layer (embedding output first, last layer last)."""
        last, stack = self._pool(texts, True)
        assert stack is not None
        return last, stack

    @torch.inference_mode()
    def sequences(self, texts: Sequence[str], max_tokens: int | None = None) -> list[np.ndarray]:
        """Each text's last hidden states over its tokens (``<s>`` … ``</s>``), (n_i, D) float32, the first
        ``max_tokens`` of them (the sequence cache, :mod:`erc.sequences`; :meth:`pool` is the first row)."""
        out, mask = self._forward(texts, False)
        hidden = out.last_hidden_state.float().cpu().numpy()
        counts = mask.sum(1).cpu().numpy().astype(int)
        return [hidden[k, :counts[k]][:max_tokens] for k in range(len(texts))]  # right padding: tokens first

    def _forward(self, texts: Sequence[str], layers: bool) -> tuple[Any, torch.Tensor]:
        """The model's output for a batch of texts, and the (B, tokens) attention mask."""
        inputs = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
        return self.model(**inputs, output_hidden_states=layers), inputs["attention_mask"]

    @torch.inference_mode()
    def _pool(self, texts: Sequence[str], layers: bool) -> tuple[np.ndarray, np.ndarray | None]:
        out, _ = self._forward(texts, layers)
        first = out.last_hidden_state[:, 0].float().cpu().numpy()
        if not layers:
            return first, None
        return first, torch.stack([h[:, 0] for h in _hidden_states(out)], dim=1).float().cpu().numpy()


def _hidden_states(out: Any) -> tuple[torch.Tensor, ...]:
    """Embedding output, then each layer's output, the last one as the model returns it.

    Pre-LayerNorm models (wav2vec2-large-lv60 / xlsr: ``do_stable_layer_norm``) normalise only the
    final output; ``hidden_states`` holds the last layer before that norm. Taking the model's own
    output there keeps "layer -1" the vectors of the last-layer cache (up to the stack's float16).
    """
    return (*out.hidden_states[:-1], out.last_hidden_state)


def describe(encoders: Iterable[AudioEncoder | TextEncoder]) -> str:
    """One line per encoder: name, size, identity (for logs)."""
    lines = []
    for enc in encoders:
        n = sum(p.numel() for p in enc.model.parameters())
        lines.append(f"{type(enc).__name__}: {enc.name} ({n / 1e6:.2f} M params, dim {enc.dim}) {enc.identity}")
    return "\n".join(lines)

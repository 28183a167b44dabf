"""What every fusion head shares: its config keys, its input and output normalisation, its interface.

A head maps an audio vector ``a`` (D_a) and a text vector ``t`` (D_t) — or, for a modality whose
encoder layers it mixes (:mod:`erc.layers`), a stack (L, D) per utterance — to ``config.n_outputs``
values (:func:`erc.vocab.n_outputs`): one logit per class (the corpus's class set in vote order;
KEMDy's :data:`~erc.vocab.EMOTIONS` by default), then the dimensional ratings
(:data:`~erc.vocab.DIMENSIONS`: valence, arousal) on the raters' own scale — none for a corpus
without them (``n_dimensions = 0``). :func:`split_output` is the one place that layout is cut apart.

Input standardisation is part of the head (:class:`InputNorm`, the submodule ``norm``): the
per-feature mean/std of the training inputs, the layer mixes and the mean/std of the valence/arousal
targets are its buffers and parameters, so a saved ``state_dict`` alone reproduces predictions (the
embedding figure reloads heads from checkpoints). The dimensional outputs are de-standardised inside
``forward`` so the head predicts on the ratings' own scale.

``embed(a, t)`` returns the input of the final Linear, the "last hidden layer" the paper reduces with UMAP;
``forward(a, t, return_embedding=True)`` returns both in one pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from erc.layers import HeadInput, LayerConfig, LayerMix, LayerRows
from erc.vocab import MODALITIES, N_CLASSES, N_DIMENSIONS, PRESET_NAMES, fusion_names, n_outputs

FUSIONS: tuple[str, ...] = fusion_names()
Fusion = Literal[FUSIONS]  # type: ignore[valid-type]  # the registered fusions: erc/heads/<name>.py
Preset = Literal[PRESET_NAMES]  # type: ignore[valid-type]
NORM = "norm"  # the base head's normalisation submodule: its state-dict keys start with "norm."


def split_output(y: Any, n_dimensions: int = N_DIMENSIONS) -> tuple[Any, Any]:
    """A head's (…, classes + dimensions) output → (class logits, valence/arousal): views, numpy or torch.

    ``n_dimensions`` = 0 (a corpus without dimensions): all logits, and an empty (…, 0) second part.
    """
    cut = y.shape[-1] - n_dimensions
    return y[..., :cut], y[..., cut:]


# --------------------------------------------------------------------------------------------------
# config


@dataclass(frozen=True, kw_only=True)
class BaseConfig:
    """The config keys every head reads. The field defaults are the ``demo`` preset.

    A head with keys of its own declares a subclass beside its code (``MixerConfig`` in
    :mod:`erc.heads.outer`) with its fields, its ``PRESETS`` values and its ``validate``;
    :class:`erc.heads.HeadConfig` inherits from all of them, so the flat run config names every key
    once and each head receives the whole config.

    ``demo`` is sized so that a 30-trial CPU grid on ~1000 utterances per fold trains in about a minute
    on 2 cores (on the demo features P = 16 beat P = 32 for both heads; a bigger outer-product image
    mostly adds products of noise). ``paper`` is the published model.
    """

    # each class's own values per preset (the fields it declares; demo = the field defaults)
    PRESETS: ClassVar[Mapping[str, Mapping[str, Any]]] = {"paper": {"proj_dim": 256}}

    fusion: Fusion = "outer"
    preset: Preset = "demo"  # the preset the sizes started from (recorded, not used)
    proj_dim: int = 16  # P: both modalities are projected to P
    dropout: float = 0.0  # the paper's mixer (lucidrains' MLPMixer defaults) used none
    # Tensor Fusion Network's constant 1 on a' and t' (projects to P-1, the outer-product image stays P×P).
    # On by default because the inputs are standardised, which strips the constant component the paper's
    # raw features gave a'⊗t' (see erc.heads.outer); False = the literal a'⊗t'.
    append_one: bool = True
    # Standardise the inputs with the training rows' mean/std (and predict valence/arousal in standard
    # units, mapped back to 1–5 inside the head). False = raw pooled vectors, raw 1–5 targets (the paper).
    standardise: bool = True
    # ---- the output layout: set from the corpus's class set and dimensions (erc.trainer does), not tuned
    n_classes: int = N_CLASSES  # class logits (KEMDy's 7 by default)
    n_dimensions: int = N_DIMENSIONS  # dimensional outputs after them: 2 (valence, arousal) or 0

    def __post_init__(self) -> None:
        run_validators(self, type(self))

    @property
    def n_outputs(self) -> int:
        """The final Linear's width: one logit per class, then one value per dimension."""
        return n_outputs(self.n_classes, self.n_dimensions)

    def validate(self) -> None:
        """This class's own checks (each subclass checks the fields it declares; see run_validators)."""
        if self.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {self.fusion!r}; registered: {list(FUSIONS)}")
        if self.preset not in PRESET_NAMES:
            raise ValueError(f"unknown preset {self.preset!r}; choose from {list(PRESET_NAMES)}")
        if self.proj_dim < 1:
            raise ValueError(f"proj_dim must be >= 1, got {self.proj_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")
        if self.n_dimensions not in (0, N_DIMENSIONS):
            raise ValueError(f"n_dimensions must be 0 or {N_DIMENSIONS}, got {self.n_dimensions}")

    @classmethod
    def preset_values(cls, preset: str) -> dict[str, Any]:
        """The keys ``preset`` sets: every class's own ``PRESETS`` entry along the MRO, base first."""
        if preset not in PRESET_NAMES:
            raise ValueError(f"unknown preset {preset!r}; choose from {list(PRESET_NAMES)}")
        values: dict[str, Any] = {"preset": preset}
        for klass in reversed(cls.__mro__):
            values.update(vars(klass).get("PRESETS", {}).get(preset, {}))
        return values

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> Any:
        """The preset's sizes; ``overrides`` beat them."""
        return cls(**{**cls.preset_values(preset), **overrides})

    @classmethod
    def demo(cls, **overrides: Any) -> Any:
        return cls.from_preset("demo", **overrides)

    @classmethod
    def paper(cls, **overrides: Any) -> Any:
        return cls.from_preset("paper", **overrides)


def run_validators(config: BaseConfig, cls: type) -> None:
    """Each class's own ``validate`` along ``cls``'s MRO, base first.

    Not ``super()`` chains: the composed :class:`erc.heads.HeadConfig` inherits every head's config
    class, and an ``outer`` head's checks must not run for a ``concat`` config.
    """
    for klass in reversed(cls.__mro__):
        own = vars(klass).get("validate")
        if own is not None:
            own(config)


# --------------------------------------------------------------------------------------------------
# modules


class Dropout(nn.Module):
    """``nn.Dropout`` whose masks come from a generator the trainer owns.

    The global RNG is shared by every thread of a process, so two heads training side by side with
    ``nn.Dropout`` would perturb each other's masks; a per-run generator keeps a seed's result exact.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.generator: torch.Generator | None = None  # None: the global RNG

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=self.generator)
        return x * keep / (1.0 - self.p)


def _stats(x: HeadInput) -> tuple[Tensor, Tensor]:
    """Mean/std for the input standardisation: a mixed modality is standardised per layer inside its
    :class:`LayerMix`, so it passes the head's own standardisation unchanged."""
    if isinstance(x, LayerRows):
        return torch.zeros(x.shape[-1]), torch.ones(x.shape[-1])
    return x.mean(0), x.std(0)


class InputNorm(nn.Module):
    """A head's inputs in and outputs out: layer mixing, standardisation, de-standardisation.

    Buffers: the training rows' per-feature mean/std of each modality and of the dimensional targets.
    Submodules ``audio_mix`` / ``text_mix``: a :class:`LayerMix` for a modality whose every encoder
    layer the head reads ((B, L, D) → (B, D)), else None.
    """

    def __init__(self, *, d_audio: int, d_text: int, n_layers: tuple[int, int] = (0, 0),
                 n_dimensions: int = N_DIMENSIONS) -> None:
        super().__init__()
        self.n_dimensions = n_dimensions
        self.register_buffer("audio_mean", torch.zeros(d_audio))
        self.register_buffer("audio_std", torch.ones(d_audio))
        self.register_buffer("text_mean", torch.zeros(d_text))
        self.register_buffer("text_std", torch.ones(d_text))
        self.register_buffer("target_mean", torch.zeros(n_dimensions))
        self.register_buffer("target_std", torch.ones(n_dimensions))
        for modality, dim, count in zip(MODALITIES, (d_audio, d_text), n_layers, strict=True):
            self.register_module(self.mix_name(modality), LayerMix(count, dim) if count else None)

    @staticmethod
    def mix_name(modality: str) -> str:
        return f"{modality}_mix"

    def mix(self, modality: str) -> LayerMix | None:
        return getattr(self, self.mix_name(modality))

    # ---------------------------------------------------------------- the forward pass

    def inputs(self, a: HeadInput, t: HeadInput) -> tuple[Tensor, Tensor]:
        """(B, D) standardised vectors of both modalities (a mixed modality's layers summed first)."""
        if (mix := self.mix("audio")) is not None:
            a = mix(a)
        if (mix := self.mix("text")) is not None:
            t = mix(t)
        return (a - self.audio_mean) / self.audio_std, (t - self.text_mean) / self.text_std

    def outputs(self, y: Tensor) -> Tensor:
        """Logits untouched; valence/arousal from standard units back to the ratings' scale."""
        logits, dims = split_output(y, self.n_dimensions)
        return torch.cat([logits, dims * self.target_std + self.target_mean], dim=-1)

    # ---------------------------------------------------------------- statistics

    @torch.no_grad()
    def set_stats(self, audio_mean: Tensor, audio_std: Tensor, text_mean: Tensor, text_std: Tensor,
                  target_mean: Tensor, target_std: Tensor) -> None:
        """Store training-set statistics; a std of 0 (a constant feature) is treated as 1."""
        for name, value in [
            ("audio_mean", audio_mean),
            ("audio_std", audio_std),
            ("text_mean", text_mean),
            ("text_std", text_std),
            ("target_mean", target_mean),
            ("target_std", target_std),
        ]:
            value = torch.as_tensor(value, dtype=torch.float32)
            if name.endswith("std"):
                value = torch.where(value > 1e-6, value, torch.ones_like(value))
            getattr(self, name).copy_(value)

    def fit(self, audio: HeadInput, text: HeadInput, va: Tensor) -> None:
        """The training rows' statistics: each mixed stack's per-layer ones, then the inputs' and targets'."""
        for modality, x in zip(MODALITIES, (audio, text), strict=True):
            mix = self.mix(modality)
            if isinstance(x, LayerRows):
                if mix is None:
                    raise ValueError(f"the head has no layer mix for its {modality} layer stack")
                mix.set_stats(*(torch.from_numpy(s) for s in x.layers.mean_std()))
        target = (va.mean(0), va.std(0)) if va.shape[-1] else (va.new_zeros(0), va.new_ones(0))  # no dimensions
        self.set_stats(*_stats(audio), *_stats(text), *target)

    def layer_weights(self) -> dict[str, list[float]]:
        """The learned softmax weight of every layer, per mixed modality."""
        return {m: torch.softmax(mix.logits.detach().float().cpu(), dim=0).tolist()
                for m in MODALITIES if (mix := self.mix(m)) is not None}

    # ---------------------------------------------------------------- saved state

    @classmethod
    def sizes(cls, state_dict: Mapping[str, Tensor]) -> tuple[int, int, tuple[int, int]]:
        """(d_audio, d_text, (audio layers, text layers)) of a saved ``InputNorm`` (its own keys)."""
        audio, text = (int(state_dict[f"{cls.mix_name(m)}.logits"].shape[0])
                       if f"{cls.mix_name(m)}.logits" in state_dict else 0 for m in MODALITIES)
        return int(state_dict["audio_mean"].shape[0]), int(state_dict["text_mean"].shape[0]), (audio, text)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Tensor]) -> InputNorm:
        d_audio, d_text, n_layers = cls.sizes(state_dict)
        norm = cls(d_audio=d_audio, d_text=d_text, n_layers=n_layers,
                   n_dimensions=int(state_dict["target_mean"].shape[0]))
        norm.load_state_dict(dict(state_dict))
        return norm


def submodule_state(state_dict: Mapping[str, Tensor], name: str) -> dict[str, Tensor]:
    """The entries of submodule ``name`` in a module's ``state_dict``, with their own (unprefixed) keys."""
    prefix = f"{name}."
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


class BaseHead(nn.Module):
    """A fusion head: ``embed`` (subclass), the final Linear ``out`` (subclass), and the shared plumbing.

    A subclass sets ``Config`` (the config class it reads), builds its layers after
    ``super().__init__`` and defines ``embed``; ``readout`` adds what sits between the embedding and
    ``out`` (dropout in ``concat``). The registration order of its submodules is the order
    ``reset_parameters`` draws their weights in: keep it when editing a head, or a seed's weights change.
    """

    Config: ClassVar[type[BaseConfig]] = BaseConfig
    # True: the head reads token sequences (erc.sequences.SeqBatch), not pooled vectors (xattn)
    reads_sequences: ClassVar[bool] = False
    norm: InputNorm
    out: nn.Linear

    def __init__(self, *, config: BaseConfig, d_audio: int, d_text: int, layers: LayerConfig | None = None,
                 n_layers: tuple[int, int] = (0, 0)) -> None:
        super().__init__()
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} reads a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config
        self.d_audio = d_audio
        self.d_text = d_text
        # which encoder layer each input is: erc.predict.predict feeds the head the same
        self.layers = layers or LayerConfig()
        for modality, count in zip(MODALITIES, n_layers, strict=True):
            if (self.layers.choice(modality) == "weighted") != (count > 0):
                raise ValueError(f"{modality}_layer={self.layers.choice(modality)!r} with {count} layers to mix")
        self.norm = InputNorm(d_audio=d_audio, d_text=d_text, n_layers=n_layers, n_dimensions=config.n_dimensions)

    # ---------------------------------------------------------------- the forward pass

    def embed(self, a: HeadInput, t: HeadInput) -> Tensor:  # (B, D_a), (B, D_t) -> (B, E)
        raise NotImplementedError

    def readout(self, h: Tensor) -> Tensor:
        """(B, E) embedding → (B, outputs) in standard units (the final Linear)."""
        return self.out(h)

    def forward(self, a: HeadInput, t: HeadInput, *,
                return_embedding: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """(B, outputs) on the ratings' scale; with ``return_embedding`` also the (B, E) embedding."""
        h = self.embed(a, t)
        y = self.norm.outputs(self.readout(h))
        return (y, h) if return_embedding else y

    def example_inputs(self, batch: int = 1) -> tuple[Tensor, Tensor]:
        """Zero inputs of the shapes the head reads ((B, D), or (B, L, D) for a mixed modality), on its
        device: what :func:`erc.heads.model_size` counts FLOPs on. A head reading other shapes overrides it."""
        device = next(self.parameters()).device
        shapes = []
        for modality, dim in zip(MODALITIES, (self.d_audio, self.d_text), strict=True):
            mix = self.norm.mix(modality)
            shapes.append((batch, mix.logits.shape[0], dim) if mix is not None else (batch, dim))
        a_shape, t_shape = shapes
        return torch.zeros(a_shape, device=device), torch.zeros(t_shape, device=device)

    # ---------------------------------------------------------------- set-up by the trainer

    def fit_normalisation(self, audio: HeadInput, text: HeadInput, va: Tensor) -> None:
        """Store the training rows' statistics (input standardisation, layer mixes, target scale)."""
        self.norm.fit(audio, text, va)

    def set_normalisation(self, audio_mean: Tensor, audio_std: Tensor, text_mean: Tensor, text_std: Tensor,
                          target_mean: Tensor, target_std: Tensor) -> None:
        """Store given statistics; a std of 0 (a constant feature) is treated as 1."""
        self.norm.set_stats(audio_mean, audio_std, text_mean, text_std, target_mean, target_std)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """Draw every weight from ``generator``, with PyTorch's default Linear/LayerNorm initialisation.

        Module constructors draw from the global RNG; re-drawing from the run's own generator makes
        a seed's weights independent of anything else the process (or another thread) does.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)  # = kaiming_uniform_(a=√5), PyTorch's default
                module.weight.uniform_(-bound, bound, generator=generator)
                if module.bias is not None:
                    module.bias.uniform_(-bound, bound, generator=generator)
            elif isinstance(module, nn.LayerNorm | LayerMix):
                module.reset_parameters()

    def use_generator(self, generator: torch.Generator | None) -> None:
        """Dropout masks from ``generator`` (on the head's device); None = the global RNG."""
        for module in self.modules():
            if isinstance(module, Dropout):
                module.generator = generator

    # ---------------------------------------------------------------- what a trained head tells

    def layer_weights(self) -> dict[str, list[float]]:
        """The learned softmax weight of every layer, per modality the head mixes (empty if none)."""
        return self.norm.layer_weights()

    @staticmethod
    def input_sizes(state_dict: Mapping[str, Tensor]) -> tuple[int, int, tuple[int, int]]:
        """(d_audio, d_text, (audio layers, text layers)) of a saved head, from its normalisation."""
        return InputNorm.sizes(submodule_state(state_dict, NORM))

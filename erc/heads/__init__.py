"""Fusion heads, one module per fusion, registered by file name (DESIGN §5, §13).

``erc/heads/<fusion>.py`` is the fusion ``<fusion>``: it defines ``Head`` (a :class:`BaseHead`
subclass) and, when the head has config keys of its own, a :class:`BaseConfig` subclass (its
``Config``) with their defaults, preset values and checks. Adding a fusion is adding that one module:
:func:`erc.vocab.fusion_names` lists the modules (names not starting with ``_``), :func:`get` imports
one by name, and :class:`HeadConfig` — the ``head`` part of :class:`erc.config.RunConfig` — inherits
every head's config class, so each key is a flat run-config key and every head gets the whole config.

- :mod:`erc.heads._base`: the shared keys, :class:`BaseHead` (input normalisation and layer mixing,
  output layout, ``reset_parameters``, generator-driven dropout), :func:`split_output`
- :mod:`erc.heads._size`: :func:`model_size` (``model/params``, ``model/flops``: what a trial logs)
- :mod:`erc.heads.concat`: ``[a'; t']`` → MLP
- :mod:`erc.heads.outer`: ``a' ⊗ t'`` → MLP-Mixer (the tensor mixer)
- every other module: one fusion arm (DESIGN §13), its equations in its docstring
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor

from erc.heads._base import (
    FUSIONS,
    NORM,
    BaseConfig,
    BaseHead,
    Dropout,
    InputNorm,
    run_validators,
    split_output,
    submodule_state,
)
from erc.heads._size import forward_flops, model_size, trainable_parameters
from erc.layers import LayerConfig
from erc.vocab import PRESET_NAMES


def get(name: str) -> type[BaseHead]:
    """The head class of fusion ``name`` (its module imported on first use)."""
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r}; registered: {list(FUSIONS)}")
    return importlib.import_module(f"{__name__}.{name}").Head


def _compose() -> type[BaseConfig]:
    """:class:`HeadConfig`: one frozen dataclass inheriting every registered head's config class."""
    classes: list[type[BaseConfig]] = []
    for name in FUSIONS:
        if (cls := get(name).Config) not in classes:
            classes.append(cls)
    # a class another one extends comes with it (and listing both would break the MRO)
    bases = tuple(c for c in classes if not any(o is not c and issubclass(o, c) for o in classes))

    def __post_init__(self: BaseConfig) -> None:
        # the shared checks, then only the chosen head's own (an outer config's patch means nothing to concat)
        BaseConfig.validate(self)
        run_validators(self, get(self.fusion).Config)

    namespace = {
        "__module__": __name__,
        "__qualname__": "HeadConfig",
        "__doc__": "Every fusion head's config keys in one frozen dataclass (the ``head`` part of a run's "
                   "config); the field defaults are the ``demo`` preset, ``paper()`` the published sizes.\n\n"
                   + "\n".join(f"- {c.__module__}.{c.__qualname__}" for c in classes),
        "__post_init__": __post_init__,
    }
    return dataclass(frozen=True, kw_only=True)(type("HeadConfig", bases, namespace))


HeadConfig = _compose()
# preset name -> HeadConfig factory (``PRESETS["paper"](depth=3)``)
PRESETS: Mapping[str, Any] = {name: partial(HeadConfig.from_preset, name) for name in PRESET_NAMES}


def build_head(config: BaseConfig, d_audio: int, d_text: int, *, layers: LayerConfig | None = None,
               n_layers: tuple[int, int] = (0, 0)) -> BaseHead:
    """The head ``config.fusion`` names, for inputs of ``d_audio`` and ``d_text`` values.

    ``layers``: which encoder layer each input is (kept as ``head.layers`` so that
    :func:`erc.predict.predict` feeds it the same); a ``weighted`` modality mixes ``n_layers`` layers.
    """
    return get(config.fusion)(config=config, d_audio=d_audio, d_text=d_text, layers=layers, n_layers=n_layers)


def from_state_dict(config: BaseConfig, state_dict: Mapping[str, Tensor], *,
                    layers: LayerConfig | None = None) -> BaseHead:
    """A trained head (eval mode, CPU) from its config and ``state_dict``: input sizes and layer mixes
    come from the saved normalisation."""
    d_audio, d_text, n_layers = BaseHead.input_sizes(state_dict)
    head = build_head(config, d_audio, d_text, layers=layers, n_layers=n_layers)
    head.load_state_dict(dict(state_dict))
    return head.eval()


def layer_weights(source: torch.nn.Module | Mapping[str, Tensor]) -> dict[str, list[float]]:
    """The learned softmax weight of every layer, per mixed modality, from a head or its ``state_dict``."""
    if isinstance(source, BaseHead):
        return source.layer_weights()
    state = source.state_dict() if isinstance(source, torch.nn.Module) else source
    # a finetune model's state holds its head under a prefix ("head.norm.…"); no norm at all: no weights
    key = f"{NORM}.audio_mean"
    prefix = next((k.removesuffix(key) for k in state if k == key or k.endswith(f".{key}")), None)
    if prefix is None:
        return {}
    return InputNorm.from_state_dict(submodule_state(state, f"{prefix}{NORM}")).layer_weights()


__all__ = ["FUSIONS", "PRESETS", "BaseConfig", "BaseHead", "Dropout", "HeadConfig", "InputNorm", "build_head",
           "forward_flops", "from_state_dict", "get", "layer_weights", "model_size", "split_output",
           "trainable_parameters"]

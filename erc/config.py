"""One run's configuration: each component's config composed, and its one flat form.

Each component owns a frozen, keyword-only dataclass beside its code — :class:`erc.heads.HeadConfig`
(every head's keys, each declared by its head module, with ``paper()``/``demo()`` presets),
:class:`erc.losses.LossConfig` (label arm and loss), :class:`erc.optim.OptimConfig`,
:class:`erc.protocol.ProtocolConfig` (data, inputs, evaluation) — and :class:`RunConfig` composes them
with the run-level keys.

Ray Tune's ``param_space``, MLflow params, YAML config files and the command line all hold the
*flat* form: ``{"fusion": "outer", "lr": 0.001, …}``. :meth:`RunConfig.from_flat` and
:meth:`RunConfig.to_flat` are the only conversion between the two; ``from_flat`` rejects unknown
keys and values of the wrong type. Every default is a dataclass field default, and exists once.
"""

from __future__ import annotations

import numbers
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal

import numpy as np

from erc.heads import HeadConfig
from erc.layers import LayerConfig
from erc.losses import LossConfig
from erc.optim import OptimConfig
from erc.protocol import ProtocolConfig
from erc.vocab import DEFAULT_SELECT_METRIC, check_metric, metric_mode


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    layers: LayerConfig = field(default_factory=LayerConfig)
    select_metric: str = DEFAULT_SELECT_METRIC  # the paper checkpoints on validation accuracy
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def __post_init__(self) -> None:
        check_metric(self.select_metric)
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise ValueError(f"device = {self.device!r}; use 'auto', 'cpu' or 'cuda[:N]'")

    @property
    def select_mode(self) -> str:
        return metric_mode(self.select_metric)

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any] | None = None) -> RunConfig:
        """From flat keys; absent keys take their default, ``preset`` picks the head's base sizes.

        An unknown key or a value of the wrong type is an error naming the key: a typo must never
        silently train the default.
        """
        flat = {k: v for k, v in (flat or {}).items() if v is not None}
        unknown = sorted(set(flat) - set(FLAT_KEYS))
        if unknown:
            raise KeyError(f"unknown config key(s) {unknown}; known keys: {sorted(FLAT_KEYS)}")
        values = {key: _coerce(key, FLAT_KEYS[key][1], value) for key, value in flat.items()}
        parts: dict[str, Any] = {}
        for name, part_cls in _PARTS.items():
            own = {f.name: values[f.name] for f in fields(part_cls) if f.name in values}
            if part_cls is HeadConfig:
                parts[name] = HeadConfig.from_preset(own.pop("preset", HeadConfig.preset), **own)
            else:
                parts[name] = part_cls(**own)
        top = {f.name: values[f.name] for f in fields(cls) if f.name not in _PARTS and f.name in values}
        return cls(**parts, **top)

    def to_flat(self) -> dict[str, Any]:
        """Every key with its resolved value (what MLflow records as the run's params)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if is_dataclass(value):
                out.update({g.name: getattr(value, g.name) for g in fields(value)})
            else:
                out[f.name] = value
        return out

    def replace(self, **flat: Any) -> RunConfig:
        """A copy with some flat keys changed."""
        return RunConfig.from_flat({**self.to_flat(), **flat})


_PARTS = {"head": HeadConfig, "loss": LossConfig, "optim": OptimConfig, "protocol": ProtocolConfig, "layers": LayerConfig}


def _flat_keys() -> dict[str, tuple[type, Any]]:
    """key -> (owning dataclass, type hint); a key may exist in only one component."""
    keys: dict[str, tuple[type, Any]] = {}
    owners = [*_PARTS.values(), RunConfig]
    for owner in owners:
        hints = typing.get_type_hints(owner)
        for f in fields(owner):
            if owner is RunConfig and f.name in _PARTS:
                continue
            if f.name in keys:
                raise TypeError(f"config key {f.name!r} is defined by both {keys[f.name][0].__name__} "
                                f"and {owner.__name__}")
            keys[f.name] = (owner, hints[f.name])
    return keys


FLAT_KEYS = _flat_keys()


def defaults() -> dict[str, Any]:
    """The flat default configuration."""
    return RunConfig().to_flat()


def _coerce(key: str, hint: Any, value: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # e.g. int | Literal["last", "weighted"]
        for option in typing.get_args(hint):
            try:
                return _coerce(key, option, value)
            except (TypeError, ValueError):
                continue
        raise TypeError(f"config[{key!r}] must be one of {_describe(hint)}, got {value!r}")
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ValueError(f"config[{key!r}] = {value!r}; choose from {list(choices)}")
        return value
    if hint is bool:
        if isinstance(value, bool | np.bool_):
            return bool(value)
    elif hint is int:
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value) == int(value):
            return int(value)
    elif hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a new field type must be taught here
        raise TypeError(f"config[{key!r}]: no conversion for type {hint}")
    raise TypeError(f"config[{key!r}] must be {getattr(hint, '__name__', hint)}, got {value!r}")


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return ", ".join(map(repr, typing.get_args(hint)))
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


__all__ = ["FLAT_KEYS", "RunConfig", "defaults"]

"""Fold keys: how paired values are keyed (a fold, or (fold, seed) when a sweep has repeats), ordered
and named in messages. Standard library only."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from numbers import Integral


def key_label(key: Hashable) -> str:
    """How a fold key is named in messages: ``fold 3`` or ``(fold 3, seed 1)``."""
    if isinstance(key, tuple) and len(key) == 2:
        return f"(fold {key[0]}, seed {key[1]})"
    return f"fold {key}" if isinstance(key, Integral) else repr(key)


def sorted_keys(keys: Iterable[Hashable]) -> list:
    """The keys in order (by fold, then seed); mixed key types in any stable order."""
    keys = list(keys)
    try:
        return sorted(keys)
    except TypeError:  # mixed key types: any stable order will do, pairing is by key anyway
        return sorted(keys, key=repr)

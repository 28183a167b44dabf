"""The feature table: one row per utterance, the one object that travels from the cache to a trial.

The feature cache (a ``datasets`` Arrow dataset, :mod:`erc.features`) is read into a
``FeatureTable`` once; the sweep layer puts that table into Ray's object store (numpy arrays
travel zero-copy) and every trial slices it with :meth:`FeatureTable.split`. Nothing downstream
converts rows again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from erc.data.folds import dev_sessions
from erc.labels import hard
from erc.layers import Layers, open_layers
from erc.vocab import SELECT_ON

# the cache's column name for each field (the Arrow dataset keeps its own names)
_CACHE_COLUMNS = {"audio": "audio_vec", "text": "text_vec"}
_OPTIONAL = ("audio_layers", "text_layers")


def split_masks(fold: np.ndarray, valid: int, exclude: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) row masks of a fold column: see :meth:`FeatureTable.split`."""
    folds = sorted(set(fold.tolist()))
    if valid not in folds:
        raise ValueError(f"fold {valid} has no rows (folds present: {folds})")
    if valid in exclude:
        raise ValueError(f"fold {valid} cannot be both validated on and excluded")
    return (fold != valid) & ~np.isin(fold, list(exclude)), fold == valid


def dev_mask(corpus: np.ndarray, session: np.ndarray, train: np.ndarray, valid: int,
             partition: np.ndarray | None = None) -> np.ndarray:
    """Rows of the dev set of held-out fold ``valid``: within the ``train`` mask, each corpus's
    :func:`erc.data.folds.dev_sessions` (sessions are numbered per corpus, as its folds are).

    ``partition`` (per row: an official partition's part, :data:`erc.vocab.PARTITIONS`, or ``""``): a
    corpus whose training rows carry official parts uses its own ``dev`` part instead of the rule.
    """
    mask = np.zeros(len(session), dtype=bool)
    for name in sorted(set(corpus[train].tolist())):
        own = train & (corpus == name)
        if partition is not None and (partition[own] != "").any():
            mask |= own & (partition == "dev")
        else:
            mask |= own & np.isin(session, dev_sessions(session[own].tolist(), valid))
    return mask


class Rows:
    """What every per-utterance table shares (a feature table, finetune mode's input table): length,
    ratings, folds, and splitting by fold; ``subset`` is each table's own."""

    segment_id: np.ndarray
    corpus: np.ndarray
    session: np.ndarray
    fold: np.ndarray
    valence: np.ndarray
    arousal: np.ndarray

    def __len__(self) -> int:
        return len(self.segment_id)

    @property
    def va(self) -> np.ndarray:  # (N, 2) valence, arousal
        return np.stack([self.valence, self.arousal], axis=1)

    @property
    def folds(self) -> list[int]:
        return sorted(set(self.fold.tolist()))

    def subset(self, index: np.ndarray | Sequence[int]) -> Any:
        raise NotImplementedError

    def split(self, valid: int, *, exclude: Sequence[int] = ()) -> tuple[Any, Any]:
        """(train, valid): validate on fold ``valid``, train on every other fold except ``exclude``.

        ``exclude`` keeps a fold out of both sides — nested tuning leaves the outer validation fold
        unseen this way (``split(inner, exclude=[outer])``).
        """
        train, valid_rows = split_masks(self.fold, valid, exclude)
        return self.subset(train), self.subset(valid_rows)

    def split_dev(self, valid: int, *, exclude: Sequence[int] = ()) -> tuple[Any, Any, Any]:
        """(train, dev, valid): :meth:`split`, then the dev set carved from the training sessions
        (:func:`dev_mask`). The dev set chooses the epoch; ``valid``, the held-out fold, is only reported."""
        train, valid_rows = split_masks(self.fold, valid, exclude)
        dev = dev_mask(self.corpus, self.session, train, valid, getattr(self, "partition", None))
        return self.subset(train & ~dev), self.subset(dev), self.subset(valid_rows)

    def split_for(self, valid: int, select_on: str, *, exclude: Sequence[int] = ()) -> tuple[Any, Any, Any]:
        """(train, dev, valid) as a run's ``select_on`` asks: ``dev`` carves a dev set
        (:meth:`split_dev`); ``valid`` (the paper's way) trains on every training session and the dev
        set is empty (``None``)."""
        if select_on == "dev":
            return self.split_dev(valid, exclude=exclude)
        if select_on == "valid":
            train, valid_rows = self.split(valid, exclude=exclude)
            return train, None, valid_rows
        raise ValueError(f"select_on = {select_on!r}; choose from {list(SELECT_ON)}")


@dataclass(frozen=True, eq=False)
class FeatureTable(Rows):
    """Pooled encoder vectors with everything a run needs about each utterance."""

    segment_id: np.ndarray  # (N,) str
    corpus: np.ndarray  # (N,) str
    session: np.ndarray  # (N,) int
    fold: np.ndarray  # (N,) int: the session fold (DESIGN §2)
    audio: np.ndarray  # (N, D_a) float32
    text: np.ndarray  # (N, D_t) float32
    votes: np.ndarray  # (N, 7) int: the 10 raters' emotions
    majority: np.ndarray  # (N,) int: unique majority class, -1 for a tie
    valence: np.ndarray  # (N,) float32: mean rating, 1–5
    arousal: np.ndarray  # (N,) float32
    # every hidden layer's pooled vectors (N, L, D), when the cache holds them (erc.layers): row views
    # of one shared array, which subset/split never copy
    audio_layers: Layers | None = None
    text_layers: Layers | None = None

    def __post_init__(self) -> None:
        n = len(self.segment_id)
        lengths = {f.name: len(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None}
        if any(length != n for length in lengths.values()):
            raise ValueError(f"feature columns differ in length: {lengths}")
        if self.audio.ndim != 2 or self.text.ndim != 2 or self.votes.ndim != 2:
            raise ValueError(f"audio, text and votes must be 2-D, got {self.audio.shape}, {self.text.shape}, "
                             f"{self.votes.shape}")

    def subset(self, index: np.ndarray | Sequence[int]) -> FeatureTable:
        """The rows ``index`` selects (a boolean mask or positions), in that order."""
        index = np.asarray(index)
        return FeatureTable(**{f.name: getattr(self, f.name)[index] for f in fields(self)
                               if getattr(self, f.name) is not None})

    def split(self, valid: int, *, exclude: Sequence[int] = ()) -> tuple[FeatureTable, FeatureTable]:
        return super().split(valid, exclude=exclude)

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any]) -> FeatureTable:
        """From a mapping of columns named as in the feature cache (``audio_vec``, ``text_vec``, …).

        ``majority`` is derived from ``votes`` when absent; the layer stacks are optional; other missing
        columns are an error.
        """
        out: dict[str, Any] = {}
        for name in _OPTIONAL:
            if columns.get(name) is not None:
                value = columns[name]
                out[name] = value if isinstance(value, Layers) else Layers(np.asarray(value))
        for f in fields(cls):
            if f.name in _OPTIONAL:
                continue
            name = _CACHE_COLUMNS.get(f.name, f.name)
            if name in columns:
                out[f.name] = np.asarray(columns[name])
            elif f.name in columns:
                out[f.name] = np.asarray(columns[f.name])
        if "majority" not in out and "votes" in out:
            out["majority"] = hard(out["votes"])
        missing = [f.name for f in fields(cls) if f.name not in out and f.name not in _OPTIONAL]
        if missing:
            raise KeyError(f"feature rows lack column(s) {missing}")
        for key in ("audio", "text", "votes"):
            if out[key].dtype == object:  # an array of row arrays (older datasets versions)
                out[key] = np.stack(out[key])
        out["audio"], out["text"] = out["audio"].astype(np.float32), out["text"].astype(np.float32)
        out["votes"], out["majority"] = out["votes"].astype(np.int64), out["majority"].astype(np.int64)
        out["segment_id"], out["corpus"] = out["segment_id"].astype(str), out["corpus"].astype(str)
        out["valence"], out["arousal"] = out["valence"].astype(np.float32), out["arousal"].astype(np.float32)
        return cls(**out)

    @classmethod
    def from_dataset(cls, ds: Any) -> FeatureTable:
        """From a cached ``datasets.Dataset`` (:func:`erc.features.build_features`), with the layer
        stacks memory-mapped from its directory when it was built with every layer."""
        columns = dict(ds.with_format("numpy")[:])
        if ds.cache_files:
            stacks = open_layers(Path(ds.cache_files[0]["filename"]).parent)
            columns.update({f"{modality}_layers": stack for modality, stack in stacks.items()})
        return cls.from_columns(columns)

"""The feature table: one row per utterance, the one object that travels from the cache to a trial.

The feature cache (a ``datasets`` Arrow dataset, :mod:`erc.features`) is read into a
``FeatureTable`` once; the sweep layer puts that table into Ray's object store (numpy arrays
travel zero-copy) and every trial slices it with :meth:`FeatureTable.split`. Nothing downstream
converts rows again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from erc.data.folds import dev_sessions
from erc.labels import hard
from erc.layers import Layers, open_layers
from erc.sequences import Sequences
from erc.vocab import DIMENSIONS, EMOTIONS, META_FILE, NO_FOLD, PARTITIONS, SELECT_ON

# the cache's column name for each field (the Arrow dataset keeps its own names)
_CACHE_COLUMNS = {"audio": "audio_vec", "text": "text_vec", "partition": "split"}
_OPTIONAL = ("audio_layers", "text_layers", "partition")
# the last layer's token sequences (erc.sequences), attached from a sequence cache, never a cache column
_SEQUENCES = ("audio_seq", "text_seq")
# what a table says about its rows as a whole (not one value per row): subset/split pass them on
LABEL_SPACE = ("classes", "dimensions")


def split_masks(fold: np.ndarray, valid: int, exclude: Sequence[int] = (),
                partition: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) row masks of a fold column: see :meth:`FeatureTable.split`."""
    if valid == NO_FOLD:
        return partition_masks(partition)
    folds = sorted(set(fold.tolist()))
    if valid not in folds:
        raise ValueError(f"fold {valid} has no rows (folds present: {folds})")
    if valid in exclude:
        raise ValueError(f"fold {valid} cannot be both validated on and excluded")
    return (fold != valid) & ~np.isin(fold, list(exclude)), fold == valid


def partition_masks(partition: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row masks of an official partition (the ``split`` column, erc.vocab.PARTITIONS)."""
    train, _, test = PARTITIONS
    if partition is None or not np.any(partition == train) or not np.any(partition == test):
        raise ValueError(f"fold {NO_FOLD} is an official partition's trial, but the rows have no "
                         f"{train!r} and {test!r} parts (a corpus with session or actor folds has folds 0..k-1)")
    return partition == train, partition == test


def dev_mask(corpus: np.ndarray, session: np.ndarray, train: np.ndarray, valid: int,
             partition: np.ndarray | None = None) -> np.ndarray:
    """Rows of the dev set of held-out fold ``valid``: within the ``train`` mask, each corpus's
    :func:`erc.data.folds.dev_sessions` (sessions are numbered per corpus, as its folds are).

    ``partition`` (per row: an official partition's part, :data:`erc.vocab.PARTITIONS`, or ``""``): a
    corpus whose training rows carry official parts uses its own ``dev`` part instead of the rule.
    """
    dev_part = PARTITIONS[1]
    if valid == NO_FOLD and partition is not None and (partition == dev_part).any():
        return partition == dev_part  # an official partition's trial: its own dev part (outside the train mask)
    # (a cross-corpus trial, all of one corpus as ``train``, carves its dev set by the session rule)
    mask = np.zeros(len(session), dtype=bool)
    for name in sorted(set(corpus[train].tolist())):
        own = train & (corpus == name)
        if partition is not None and (partition[own] == dev_part).any():
            mask |= own & (partition == dev_part)
        else:
            mask |= own & np.isin(session, dev_sessions(session[own].tolist(), valid))
    return mask


class Rows:
    """What every per-utterance table shares (a feature table, finetune mode's input table): length,
    ratings, folds, and splitting by fold; ``subset`` is each table's own.

    ``classes`` name the vote columns in order; ``dimensions`` the dimensional targets (valence,
    arousal), () for a corpus without them (CREMA-D): ``va`` is then (N, 0).
    """

    segment_id: np.ndarray
    corpus: np.ndarray
    session: np.ndarray
    fold: np.ndarray
    valence: np.ndarray
    arousal: np.ndarray
    classes: tuple[str, ...]
    dimensions: tuple[str, ...]
    partition: np.ndarray | None  # (N,) str: the official partition's part (`split`), where the corpus has one

    def __len__(self) -> int:
        return len(self.segment_id)

    @property
    def va(self) -> np.ndarray:  # (N, dimensions): valence, arousal
        if not self.dimensions:
            return np.zeros((len(self), 0), np.float32)
        return np.stack([getattr(self, d) for d in self.dimensions], axis=1)

    @property
    def folds(self) -> list[int]:
        return sorted(set(self.fold.tolist()))

    def subset(self, index: np.ndarray | Sequence[int]) -> Any:
        raise NotImplementedError

    def split(self, valid: int, *, exclude: Sequence[int] = ()) -> tuple[Any, Any]:
        """(train, valid): validate on fold ``valid``, train on every other fold except ``exclude``.

        ``exclude`` keeps a fold out of both sides — nested tuning leaves the outer validation fold
        unseen this way (``split(inner, exclude=[outer])``). ``valid`` = :data:`erc.vocab.NO_FOLD`
        on a corpus with an official partition: train on its ``train`` part, validate on ``test``
        (its ``dev`` part is in neither).
        """
        train, valid_rows = split_masks(self.fold, valid, exclude, self.partition)
        return self.subset(train), self.subset(valid_rows)

    def split_dev(self, valid: int, *, exclude: Sequence[int] = ()) -> tuple[Any, Any, Any]:
        """(train, dev, valid): :meth:`split`, then the dev set carved from the training sessions
        (:func:`dev_mask`). The dev set chooses the epoch; ``valid``, the held-out fold, is only reported."""
        train, valid_rows = split_masks(self.fold, valid, exclude, self.partition)
        dev = dev_mask(self.corpus, self.session, train, valid, self.partition)
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
    votes: np.ndarray  # (N, classes): the raters' votes per class (int64 counts, float64 where fractional)
    majority: np.ndarray  # (N,) int: unique majority class, -1 for a tie
    valence: np.ndarray  # (N,) float32: mean rating, 1–5 (NaN for a corpus without dimensions)
    arousal: np.ndarray  # (N,) float32
    # every hidden layer's pooled vectors (N, L, D), when the cache holds them (erc.layers): row views
    # of one shared array, which subset/split never copy
    audio_layers: Layers | None = None
    text_layers: Layers | None = None
    # the last layer's token sequences (erc.sequences; the xattn head reads them): row views of one
    # shared ragged store, attached with with_sequences
    audio_seq: Sequences | None = None
    text_seq: Sequences | None = None
    # (N,) str: the official partition's part (erc.vocab.PARTITIONS; the cache's `split` column), if any
    partition: np.ndarray | None = None
    classes: tuple[str, ...] = EMOTIONS  # the vote columns' class names, in order
    dimensions: tuple[str, ...] = DIMENSIONS  # the dimensional targets, () for a corpus without them

    def _row_fields(self) -> list[str]:
        return [f.name for f in fields(self) if f.name not in LABEL_SPACE and getattr(self, f.name) is not None]

    def __post_init__(self) -> None:
        n = len(self.segment_id)
        lengths = {name: len(getattr(self, name)) for name in self._row_fields()}
        if any(length != n for length in lengths.values()):
            raise ValueError(f"feature columns differ in length: {lengths}")
        if self.audio.ndim != 2 or self.text.ndim != 2 or self.votes.ndim != 2:
            raise ValueError(f"audio, text and votes must be 2-D, got {self.audio.shape}, {self.text.shape}, "
                             f"{self.votes.shape}")
        if self.votes.shape[1] != len(self.classes):
            raise ValueError(f"votes have {self.votes.shape[1]} columns for {len(self.classes)} classes "
                             f"{list(self.classes)}")

    def subset(self, index: np.ndarray | Sequence[int]) -> FeatureTable:
        """The rows ``index`` selects (a boolean mask or positions), in that order."""
        index = np.asarray(index)
        return FeatureTable(**{name: getattr(self, name)[index] for name in self._row_fields()},
                            classes=self.classes, dimensions=self.dimensions)

    def split(self, valid: int, *, exclude: Sequence[int] = ()) -> tuple[FeatureTable, FeatureTable]:
        return super().split(valid, exclude=exclude)

    def with_sequences(self, sequences: Mapping[str, Sequences]) -> FeatureTable:
        """This table with each modality's token sequences (``{"audio": …, "text": …}``, one row per row of
        the table, in its order: :func:`erc.features.build_sequences` of the same corpus)."""
        for modality, found in sequences.items():
            if len(found) != len(self):
                raise ValueError(f"{len(found)} {modality} sequences for {len(self)} feature rows")
        return dataclasses.replace(self, **{f"{m}_seq": s for m, s in sequences.items()})

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any], *, classes: Sequence[str] = EMOTIONS,
                     dimensions: Sequence[str] = DIMENSIONS) -> FeatureTable:
        """From a mapping of columns named as in the feature cache (``audio_vec``, ``text_vec``, …).

        ``majority`` is derived from ``votes`` when absent; the layer stacks are optional; other missing
        columns are an error. Votes stay whole numbers (int64) when they all are, else float64.
        """
        out: dict[str, Any] = {"classes": tuple(classes), "dimensions": tuple(dimensions)}
        for name in _OPTIONAL:
            column = _CACHE_COLUMNS.get(name, name)
            if columns.get(column) is not None:
                value = columns[column]
                if name == "partition":
                    out[name] = np.asarray(value).astype(str)
                else:
                    out[name] = value if isinstance(value, Layers) else Layers(np.asarray(value))
        for f in fields(cls):
            if f.name in _OPTIONAL or f.name in _SEQUENCES or f.name in LABEL_SPACE:
                continue
            name = _CACHE_COLUMNS.get(f.name, f.name)
            if name in columns:
                out[f.name] = np.asarray(columns[name])
            elif f.name in columns:
                out[f.name] = np.asarray(columns[f.name])
        if "majority" not in out and "votes" in out:
            out["majority"] = hard(out["votes"])
        missing = [f.name for f in fields(cls) if f.name not in out and f.name not in (*_OPTIONAL, *_SEQUENCES)]
        if missing:
            raise KeyError(f"feature rows lack column(s) {missing}")
        for key in ("audio", "text", "votes"):
            if out[key].dtype == object:  # an array of row arrays (older datasets versions)
                out[key] = np.stack(out[key])
        out["audio"], out["text"] = out["audio"].astype(np.float32), out["text"].astype(np.float32)
        votes = out["votes"]
        whole = np.issubdtype(votes.dtype, np.integer) or np.array_equal(votes, np.round(votes))
        out["votes"] = votes.astype(np.int64 if whole else np.float64)
        out["majority"] = out["majority"].astype(np.int64)
        out["segment_id"], out["corpus"] = out["segment_id"].astype(str), out["corpus"].astype(str)
        out["valence"], out["arousal"] = out["valence"].astype(np.float32), out["arousal"].astype(np.float32)
        return cls(**out)

    @classmethod
    def from_dataset(cls, ds: Any) -> FeatureTable:
        """From a cached ``datasets.Dataset`` (:func:`erc.features.build_features`), with the layer
        stacks memory-mapped from its directory when it was built with every layer."""
        columns = dict(ds.with_format("numpy")[:])
        space: dict[str, Any] = {}
        if ds.cache_files:
            where = Path(ds.cache_files[0]["filename"]).parent
            stacks = open_layers(where)
            columns.update({f"{modality}_layers": stack for modality, stack in stacks.items()})
            # the build record names the classes and dimensions; a cache from before other corpora is KEMDy's
            meta = json.loads((where / META_FILE).read_text()) if (where / META_FILE).is_file() else {}
            space = {name: tuple(meta[name]) for name in LABEL_SPACE if name in meta}
        return cls.from_columns(columns, **space)

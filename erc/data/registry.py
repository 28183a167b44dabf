"""The corpus registry (DESIGN §2): one module of ``erc/data/`` per corpus, each declaring a :class:`CorpusSpec`.

A spec names the release folder the corpus is detected by, its reader, its categories (in the
release's own words), its class sets (the default first), its dimensional scale (or none) and how
trials split it (session folds, actor folds, or the release's official partition). Each module
writes its fixture/demo layout from the same layout definition its reader reads by.

A reader returns a :class:`CorpusRead`: the groups folds are cut from (sessions or actors, named
by the files, whatever survives exclusion) and one record per utterance, a dict of the columns of
``Corpus.utterances`` or an :class:`erc.data.kemdy.Exclusion`.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from erc.data.kemdy import Exclusion
from erc.vocab import CORPUS_NAMES, DIMENSIONS, SPLIT_KINDS

ClassSet = Mapping[str, str]  # a release category → the class it votes for (categories not named are dropped)


@dataclass
class CorpusRead:
    """One corpus as its files describe it, under one class set."""

    classes: tuple[str, ...]  # vote order
    dimensions: tuple[str, ...]  # DIMENSIONS, or () for a corpus without them
    groups: list[int]  # every session/actor the files name (for folds); empty for an official partition
    records: list[dict | Exclusion] = field(default_factory=list)
    # a corpus without a spec (the manifest) says these itself: how trials split it, its rating scale
    split: str | None = None
    scale: tuple[float, float] | None = None


@dataclass(frozen=True)
class CorpusSpec:
    name: str  # the `corpus` column value and the name --corpora chooses by
    release: str  # the release folder's name under the data root, a glob (``MSP-PODCAST*``)
    categories: tuple[str, ...]  # the release's categories, in its own words
    class_sets: dict[str, ClassSet]  # by name; the first is the default
    scale: tuple[float, float] | None  # the dimensions' rating scale, None without dimensions
    split: str  # one of SPLIT_KINDS
    read: Callable[[Path, str], CorpusRead]  # (the release folder, a class-set name)

    def __post_init__(self) -> None:
        if self.split not in SPLIT_KINDS:
            raise ValueError(f"{self.name}: split {self.split!r} is not one of {SPLIT_KINDS}")

    @property
    def default_classes(self) -> str:
        return next(iter(self.class_sets))

    @property
    def dimensions(self) -> tuple[str, ...]:
        return DIMENSIONS if self.scale is not None else ()

    def class_set(self, name: str | None) -> ClassSet:
        name = name or self.default_classes
        if name not in self.class_sets:
            raise ValueError(f"{self.name} has no class set {name!r}; choose from {list(self.class_sets)}")
        return self.class_sets[name]

    def classes(self, name: str | None = None) -> tuple[str, ...]:
        """The class names of a class set in vote order (first appearance among the categories)."""
        return tuple(dict.fromkeys(self.class_set(name).values()))

    def detects(self, folder: Path) -> bool:
        return folder.is_dir() and fnmatch.fnmatchcase(folder.name, self.release)


def registry() -> tuple[CorpusSpec, ...]:
    """Every folder-detected corpus's spec, in CORPUS_NAMES order (the manifest is read by file, not folder)."""
    return tuple(importlib.import_module(f"erc.data.{name}").SPEC for name in CORPUS_NAMES)


def spec(name: str) -> CorpusSpec:
    by_name = {s.name: s for s in registry()}
    if name not in by_name:
        raise ValueError(f"unknown corpus {name!r}; choose from {list(by_name)}")
    return by_name[name]


# --------------------------------------------------------------------------- shared by the readers
def tally(ratings: list[list[str]], class_set: ClassSet, classes: tuple[str, ...]) -> list[float]:
    """Votes per class from raters' category lists: a rater naming n categories gives 1/n to each;
    categories outside the class set are dropped (their share with them).

    Summed exactly (fractions), so equal vote totals compare equal and ties are found.
    """
    votes = [Fraction(0)] * len(classes)
    for named in ratings:
        if not named:
            continue
        share = Fraction(1, len(named))
        for category in named:
            if category in class_set:
                votes[classes.index(class_set[category])] += share
    return [float(v) for v in votes]


def majority(votes: list[float]) -> int:
    """The unique argmax, else -1 (a tie)."""
    v = np.asarray(votes, dtype=np.float64)
    top = v.max()
    return -1 if (v == top).sum() > 1 else int(v.argmax())


def no_vote_reason(class_set_name: str, classes: tuple[str, ...]) -> str:
    return f"no vote in the class set: {class_set_name} ({', '.join(classes)})"

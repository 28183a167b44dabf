"""KEMDy20 (``KEMDy20_v1_1/``): the KEMDy annotation layout :data:`erc.data.layout.KEMDY20`,
read by :mod:`erc.data.kemdy` and written by :mod:`erc.data.demo` (DESIGN §2).

Seven categories (:data:`erc.vocab.EMOTIONS`), 10 evaluators per utterance, valence/arousal on 1–5,
session folds.
"""

from __future__ import annotations

from pathlib import Path

from erc.data.kemdy import read_layout
from erc.data.layout import KEMDY20
from erc.data.registry import CorpusRead, CorpusSpec
from erc.vocab import CLASS_SETS, DIMENSIONS, EMOTIONS

LAYOUT = KEMDY20


def read(release: Path, classes: str) -> CorpusRead:
    SPEC.class_set(classes)  # one class set: the seven categories themselves
    layout_read = read_layout(release.parent, LAYOUT)
    return CorpusRead(classes=EMOTIONS, dimensions=DIMENSIONS, groups=layout_read.sessions,
                      records=layout_read.records)


SPEC = CorpusSpec(
    name=LAYOUT.name,
    release=LAYOUT.directory,
    categories=EMOTIONS,
    class_sets={"kemdy": {e: e for e in CLASS_SETS["kemdy"]}},
    scale=(1.0, 5.0),
    split="session",
    read=read,
)

"""The KEMDy data layer: ``load_corpus(root) -> Corpus`` (DESIGN §2)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from erc.atomic import write_atomic
from erc.data.folds import session_folds
from erc.data.kemdy import Exclusion, read_layout
from erc.data.layout import ANNOTATION_DIR, LAYOUTS, WAV_DIR
from erc.vocab import N_FOLDS

log = logging.getLogger(__name__)

COLUMNS = [
    "corpus", "session", "segment_id", "wav_path", "text", "text_raw", "votes", "valence", "arousal",
    "majority", "total_emotion", "duration", "fold",
]
EXCLUDED_COLUMNS = ["corpus", "session", "segment_id", "reason"]
SESSION_COLUMNS = ["corpus", "session", "fold", "n_utterances", "n_excluded"]


@dataclass
class Corpus:
    """Usable utterances (one row each), every excluded segment with its reason, and the sessions.

    ``sessions`` has one row per session the annotation files name, with its fold and how many of
    its utterances were kept and excluded: the session → fold map, including sessions left empty.
    """

    root: Path
    utterances: pd.DataFrame
    excluded: pd.DataFrame
    sessions: pd.DataFrame

    def summary(self) -> str:
        counts = self.utterances.groupby("corpus").size()
        lines = [
            f"{len(self.utterances)} utterances from {self.root} ("
            + ", ".join(f"{name}: {n}" for name, n in counts.items()) + ")"
        ]
        if len(self.excluded):
            lines.append(f"{len(self.excluded)} excluded:")
            kinds = self.excluded["reason"].str.split(":").str[0]  # reasons read "kind: detail"
            for kind, n in kinds.value_counts().items():
                lines.append(f"  {n:6d}  {kind}")
        else:
            lines.append("0 excluded")
        empty = self.sessions[self.sessions.n_utterances == 0]
        if len(empty):
            # Their folds lose these sessions' validation data; the other sessions keep their folds.
            lines.append("sessions with no usable utterance: " + ", ".join(
                f"{c} {s} (fold {f})" for c, s, f in zip(empty.corpus, empty.session, empty.fold)))
        return "\n".join(lines)

    def save_exclusions(self, path: str | Path) -> Path:
        """Write the exclusion table as CSV (kept next to whatever was built from the corpus).

        By a rename: two sweeps starting together write the same file while the other reads it.
        """
        return write_atomic(path, self.excluded.to_csv(index=False))


def load_corpus(root: str | Path, n_folds: int = N_FOLDS, verbose: bool = True) -> Corpus:
    """Read every corpus of :data:`erc.data.layout.LAYOUTS` under ``root`` (``KEMDy19/``, ``KEMDy20_v1_1/``)
    into one table with session folds.

    Bad utterances are excluded with a reason, never dropped silently and never fatal; a root
    without either corpus, or with no usable utterance, is an error naming the expected layout.
    """
    root = Path(root).expanduser().resolve()
    firsts = [layout.annotation_path(root, 1, "F" if layout.per_speaker else None) for layout in LAYOUTS]
    expected = (f"expected {' … and/or '.join(map(str, firsts))} … with {WAV_DIR}/ folders beside the "
                f"{ANNOTATION_DIR}/ folders (DESIGN §2)")
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} does not exist; {expected}")
    present = [layout for layout in LAYOUTS if (root / layout.directory).is_dir()]
    if not present:
        raise FileNotFoundError(f"no KEMDy corpus under {root}; {expected}")

    rows: list[dict] = []
    excluded: list[dict] = []
    folds: list[dict] = []
    seen: set[str] = set()
    for layout in present:
        read = read_layout(root, layout)
        # Folds come from the sessions the annotation files name, never from the surviving rows.
        folds += [{"corpus": layout.name, "session": session, "fold": fold}
                  for session, fold in session_folds(read.sessions, n_folds).items()]
        for record in read.records:
            if isinstance(record, Exclusion):
                excluded.append({"corpus": layout.name, **record._asdict()})
            elif record["segment_id"] in seen:
                excluded.append({"corpus": layout.name, "session": record["session"],
                                 "segment_id": record["segment_id"],
                                 "reason": "duplicate segment id: first occurrence kept"})
            else:
                seen.add(record["segment_id"])
                rows.append(record)
    if not rows:
        raise ValueError(f"no usable utterance under {root} ({len(excluded)} excluded); {expected}")

    sessions = pd.DataFrame(folds)
    utterances = pd.DataFrame(rows).merge(sessions, on=["corpus", "session"], how="left", validate="m:1")
    utterances = utterances[COLUMNS].sort_values(["corpus", "session", "segment_id"], ignore_index=True)
    excluded_table = pd.DataFrame(excluded, columns=EXCLUDED_COLUMNS)
    key = ["corpus", "session"]
    sessions["n_utterances"] = _count_by(sessions, utterances, key)
    sessions["n_excluded"] = _count_by(sessions, excluded_table, key)
    corpus = Corpus(root, utterances, excluded_table, sessions[SESSION_COLUMNS])
    if verbose:
        # Exclusions are shown without any logging set-up (WARNING reaches the last-resort handler).
        (log.warning if len(corpus.excluded) else log.info)(corpus.summary())
    return corpus


def _count_by(table: pd.DataFrame, rows: pd.DataFrame, key: list[str]) -> np.ndarray:
    """How many of ``rows`` fall on each row of ``table`` (matched on ``key``), 0 where none."""
    counts = rows.groupby(key).size().rename("n")
    return table.join(counts, on=key)["n"].fillna(0).astype("int64").to_numpy()


__all__ = ["N_FOLDS", "Corpus", "load_corpus", "session_folds"]

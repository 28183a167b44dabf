"""The KEMDy data layer: ``load_corpus(root) -> Corpus`` (DESIGN §2)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from erc.data.folds import N_FOLDS, session_folds
from erc.data.kemdy import LAYOUTS, read_layout

log = logging.getLogger(__name__)

COLUMNS = [
    "corpus", "session", "segment_id", "wav_path", "text", "text_raw", "votes", "valence", "arousal",
    "majority", "total_emotion", "duration", "fold",
]


@dataclass
class Corpus:
    """Usable utterances (one row each) and every excluded segment with its reason."""

    root: Path
    utterances: pd.DataFrame
    excluded: pd.DataFrame

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
        return "\n".join(lines)

    def save_exclusions(self, path: str | Path) -> Path:
        """Write the exclusion table as CSV (kept next to whatever was built from the corpus)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.excluded.to_csv(path, index=False)
        return path


def load_corpus(root: str | Path, n_folds: int = N_FOLDS, verbose: bool = True) -> Corpus:
    """Read ``root/KEMDy19`` and/or ``root/KEMDy20_v1_1`` into one table with session folds.

    Bad utterances are excluded with a reason, never dropped silently and never fatal; a root
    without either corpus, or with no usable utterance, is an error naming the expected layout.
    """
    root = Path(root).expanduser().resolve()
    expected = (
        f"expected {root}/KEMDy19/annotation/Session01_F_res.csv … and/or "
        f"{root}/KEMDy20_v1_1/annotation/Sess01_eval.csv … with wav/ folders beside them (DESIGN §2)"
    )
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} does not exist; {expected}")
    present = [layout for layout in LAYOUTS if (root / layout.directory).is_dir()]
    if not present:
        raise FileNotFoundError(f"no KEMDy corpus under {root}; {expected}")

    rows: list[dict] = []
    excluded: list[dict] = []
    seen: set[str] = set()
    for layout in present:
        for record in read_layout(root, layout):
            if isinstance(record, tuple):
                excluded.append({"corpus": layout.name, "segment_id": record[0], "reason": record[1]})
            elif record["segment_id"] in seen:
                excluded.append({"corpus": layout.name, "segment_id": record["segment_id"],
                                 "reason": "duplicate segment id: first occurrence kept"})
            else:
                seen.add(record["segment_id"])
                rows.append(record)
    if not rows:
        raise ValueError(f"no usable utterance under {root} ({len(excluded)} excluded); {expected}")

    utterances = pd.DataFrame(rows)
    utterances["fold"] = -1
    for name, group in utterances.groupby("corpus"):
        folds = session_folds(group["session"], n_folds)
        utterances.loc[group.index, "fold"] = group["session"].map(folds)
    utterances = utterances[COLUMNS].sort_values(["corpus", "session", "segment_id"], ignore_index=True)
    corpus = Corpus(root, utterances, pd.DataFrame(excluded, columns=["corpus", "segment_id", "reason"]))
    if verbose:
        # Exclusions are shown without any logging set-up (WARNING reaches the last-resort handler).
        (log.warning if len(corpus.excluded) else log.info)(corpus.summary())
    return corpus


__all__ = ["N_FOLDS", "Corpus", "load_corpus", "session_folds"]

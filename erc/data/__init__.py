"""The data layer: ``load_corpus(path) -> Corpus`` over every registered corpus (DESIGN §2, :mod:`erc.data.registry`)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from erc.atomic import write_atomic
from erc.data.folds import session_folds
from erc.data.kemdy import Exclusion
from erc.data.layout import ANNOTATION_DIR, LAYOUTS, WAV_DIR
from erc.data.registry import CorpusRead, CorpusSpec, registry
from erc.vocab import DIMENSIONS, EMOTIONS, MANIFEST, MANIFEST_SUFFIXES, N_FOLDS

log = logging.getLogger(__name__)

COLUMNS = [
    "corpus", "session", "segment_id", "wav_path", "text", "text_raw", "votes", "valence", "arousal",
    "majority", "total_emotion", "duration", "fold",
    # the official partition's part (erc.vocab.PARTITIONS) where the corpus has one, else ""
    "split",
    # every rater's dimension ratings (for rater agreement); empty where the release keeps none
    *(f"{d}_ratings" for d in DIMENSIONS),
]
EXCLUDED_COLUMNS = ["corpus", "session", "segment_id", "reason"]
SESSION_COLUMNS = ["corpus", "session", "fold", "n_utterances", "n_excluded"]
_DEFAULTS = {"split": "", "total_emotion": "", **{f"{d}_ratings": [] for d in DIMENSIONS}}


@dataclass
class Corpus:
    """Usable utterances (one row each), every excluded segment with its reason, and the sessions.

    ``sessions`` has one row per session (or actor) the annotation files name, with its fold and how
    many of its utterances were kept and excluded: the session → fold map, including sessions left
    empty. A corpus with an official partition has no session rows: its ``split`` column decides.
    ``classes`` are the class names in vote order (``votes`` may be fractional); ``dimensions`` the
    dimensional targets, () for a corpus without them (valence/arousal are then NaN).
    """

    root: Path
    utterances: pd.DataFrame
    excluded: pd.DataFrame
    sessions: pd.DataFrame
    classes: tuple[str, ...] = EMOTIONS
    dimensions: tuple[str, ...] = DIMENSIONS
    splits: dict[str, str] = field(default_factory=dict)  # corpus name → how trials split it (SPLIT_KINDS)
    scales: dict[str, tuple[float, float] | None] = field(default_factory=dict)  # corpus name → rating scale

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




class CorpusError(ValueError):
    """Data a user can fix from the message alone (a wrong root, an unknown corpus, class sets that do not
    match, nothing usable): entry points print it as one line, not a traceback."""


class CorpusNotFoundError(CorpusError, FileNotFoundError):
    """No data where the user pointed (``FileNotFoundError`` too, for callers that catch that)."""

def find_corpora(root: Path, corpora: list[str] | None = None) -> list[tuple[CorpusSpec, Path]]:
    """The registered corpora under ``root`` (or ``root`` itself when it is a release folder), by
    release folder name, optionally only those ``corpora`` names (a spec's name or module, any case)."""
    specs = registry()
    found = [(s, root) for s in specs if s.detects(root)]
    if not found:
        found = [(s, folder) for s in specs for folder in sorted(root.iterdir()) if s.detects(folder)]
    if corpora:
        wanted = {c.strip().lower() for c in corpora if c.strip()}
        names = {s.name.lower() for s in specs} | {s.read.__module__.rsplit(".", 1)[-1] for s in specs}
        unknown = wanted - names
        if unknown:
            raise CorpusError(f"unknown corpora {sorted(unknown)}; choose from {[s.name for s in specs]}")
        found = [(s, f) for s, f in found
                 if {s.name.lower(), s.read.__module__.rsplit(".", 1)[-1]} & wanted]
    return found


def expected_layout() -> str:
    kemdy = {layout.directory for layout in LAYOUTS}
    firsts = [layout.annotation_path(Path(), 1, "F" if layout.per_speaker else None) for layout in LAYOUTS]
    others = [f"{s.release}/" for s in registry() if s.release not in kemdy]
    return (f"expected {' … and/or '.join(map(str, firsts))} … with {WAV_DIR}/ folders beside the "
            f"{ANNOTATION_DIR}/ folders, or the release folders {', '.join(others)} under the data root, or a "
            f"ratings manifest ({' / '.join(MANIFEST_SUFFIXES)}) (DESIGN §2)")


def _in_class_order(read: CorpusRead, classes: tuple[str, ...]) -> CorpusRead:
    """``read`` with its votes reordered to ``classes`` (the same names in another order)."""
    order = [read.classes.index(c) for c in classes]  # new position -> old position
    new_index = {old: new for new, old in enumerate(order)}

    def mapped(r: dict) -> dict:
        votes = np.asarray(r["votes"])[order]
        majority = r.get("majority", -1)
        return {**r, "votes": votes.tolist() if isinstance(r["votes"], list) else votes,
                "majority": new_index[majority] if majority is not None and majority >= 0 else majority}

    records = [r if isinstance(r, Exclusion) else mapped(r) for r in read.records]
    return dataclasses.replace(read, classes=tuple(classes), records=records)


def load_corpus(root: str | Path, n_folds: int = N_FOLDS, verbose: bool = True, *,
                corpora: list[str] | None = None, classes: str | None = None) -> Corpus:
    """Read every registered corpus under ``root`` (found by release folder name: ``KEMDy19/``,
    ``KEMDy20_v1_1/``, ``IEMOCAP_full_release/``, ``MSP-PODCAST*``, ``CREMA-D/``), or the ratings
    manifest ``root`` when it is a ``.csv`` / ``.jsonl`` file, into one table with folds.

    ``corpora`` chooses among the corpora found; ``classes`` names a class set (each corpus's default
    otherwise). The corpora read together must share their classes and dimensions. Bad utterances are
    excluded with a reason, never dropped silently and never fatal; a root without any corpus, or with
    no usable utterance, is an error naming the expected layout.
    """
    root = Path(root).expanduser().resolve()
    expected = expected_layout()
    reads: list[tuple[str, str, tuple[float, float] | None, CorpusRead]] = []  # name, split kind, scale, read
    if root.is_file() and root.suffix.lower() in MANIFEST_SUFFIXES:
        from erc.data import manifest

        read = manifest.read(root, classes or manifest.ALL)
        reads.append((MANIFEST, read.split, read.scale, read))
    else:
        if not root.is_dir():
            raise CorpusNotFoundError(f"data root {root} does not exist; {expected}")
        present = find_corpora(root, corpora)
        if not present:
            raise CorpusNotFoundError(f"no corpus under {root}; {expected}")
        for spec, folder in present:
            read = spec.read(folder, classes or spec.default_classes)
            reads.append((spec.name, read.split or spec.split, read.scale or spec.scale, read))
    name0, *_, first = reads[0]
    for i, (name, split, scale, read) in enumerate(reads[1:], start=1):
        if (sorted(read.classes), read.dimensions) != (sorted(first.classes), first.dimensions):
            raise CorpusError(
                f"{name0} and {name} cannot be read together: classes {list(first.classes)} "
                f"(dimensions {list(first.dimensions)}) vs {list(read.classes)} (dimensions "
                f"{list(read.dimensions)}); choose one with corpora=/--corpora, or a shared class set")
        if read.classes != first.classes:  # the same names in another order: votes mapped by name
            reads[i] = (name, split, scale, _in_class_order(read, first.classes))

    rows: list[dict] = []
    excluded: list[dict] = []
    folds: list[dict] = []
    seen: set[str] = set()
    for name, split, _, read in reads:
        # Folds come from the groups the files name, never from the surviving rows.
        fold_of = session_folds(read.groups, n_folds) if split != "official" else {}
        folds += [{"corpus": name, "session": session, "fold": fold} for session, fold in fold_of.items()]
        for record in read.records:
            if isinstance(record, Exclusion):
                excluded.append({"corpus": name, **record._asdict()})
            elif record["segment_id"] in seen:
                excluded.append({"corpus": name, "session": record["session"],
                                 "segment_id": record["segment_id"],
                                 "reason": "duplicate segment id: first occurrence kept"})
            else:
                seen.add(record["segment_id"])
                rows.append({**_DEFAULTS, **record, "corpus": name,
                             "fold": fold_of.get(record["session"], -1)})
    if not rows:
        raise CorpusError(f"no usable utterance under {root} ({len(excluded)} excluded); {expected}")

    sessions = pd.DataFrame(folds, columns=["corpus", "session", "fold"])
    utterances = pd.DataFrame(rows)[COLUMNS].sort_values(["corpus", "session", "segment_id"], ignore_index=True)
    excluded_table = pd.DataFrame(excluded, columns=EXCLUDED_COLUMNS)
    key = ["corpus", "session"]
    sessions["n_utterances"] = _count_by(sessions, utterances, key)
    sessions["n_excluded"] = _count_by(sessions, excluded_table, key)
    corpus = Corpus(root, utterances, excluded_table, sessions[SESSION_COLUMNS], classes=first.classes,
                    dimensions=first.dimensions, splits={n: k for n, k, _, _ in reads},
                    scales={n: sc for n, _, sc, _ in reads})
    if verbose:
        # Exclusions are shown without any logging set-up (WARNING reaches the last-resort handler).
        (log.warning if len(corpus.excluded) else log.info)(corpus.summary())
    return corpus


def _count_by(table: pd.DataFrame, rows: pd.DataFrame, key: list[str]) -> np.ndarray:
    """How many of ``rows`` fall on each row of ``table`` (matched on ``key``), 0 where none."""
    counts = rows.groupby(key).size().rename("n")
    return table.join(counts, on=key)["n"].fillna(0).astype("int64").to_numpy()


__all__ = ["MANIFEST", "N_FOLDS", "Corpus", "find_corpora", "load_corpus", "session_folds"]

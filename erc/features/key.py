"""The feature cache's key: the utterance table a cache is built from and its fingerprint (DESIGN §4).

The fingerprint covers the corpus content (ids, transcripts, labels, folds, and a content hash of
every WAV), the encoders' identities and the audio settings, so any change builds a new cache and an
unchanged input never re-runs an encoder. The input cache (:mod:`erc.inputs`) builds its key on it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from erc.atomic import write_atomic
from erc.encoders import file_digest, pin
from erc.features.schema import has_partition
from erc.vocab import DIMENSIONS, EMOTIONS

log = logging.getLogger(__name__)

# Bump when the stored layout or the extraction changes meaning: every cache is then rebuilt.
FEATURES_VERSION = 1
LABEL_COLUMNS = ["votes", "majority", "valence", "arousal", "fold", "corpus", "session"]
REQUIRED_COLUMNS = ["segment_id", "wav_path", "text", *LABEL_COLUMNS]
DIGEST_MEMO = "wav_digests.json"


def read_corpus(corpus: Any) -> Any:
    """A data root read with :func:`erc.data.load_corpus`; a Corpus or an utterance table as it is."""
    if isinstance(corpus, (str, Path)):
        from erc.data import load_corpus

        return load_corpus(corpus)
    return corpus


def utterance_table(corpus: Any) -> pd.DataFrame:
    """Accept a Corpus, its utterance table, or a data root (read with erc.data.load_corpus)."""
    corpus = read_corpus(corpus)
    table = corpus.utterances if hasattr(corpus, "utterances") else corpus
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"expected a Corpus, a DataFrame or a data root, got {type(corpus).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"utterance table lacks columns {missing} (needs {REQUIRED_COLUMNS})")
    if table.empty:
        raise ValueError("the corpus has no utterances to extract features from")
    if table["segment_id"].duplicated().any():
        dup = table.loc[table["segment_id"].duplicated(), "segment_id"].iloc[0]
        raise ValueError(f"duplicate segment id {dup!r} in the utterance table")
    return table.reset_index(drop=True)


def corpus_labels(corpus: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(classes in vote order, dimensions) of a Corpus; KEMDy's for a bare utterance table."""
    return tuple(getattr(corpus, "classes", EMOTIONS)), tuple(getattr(corpus, "dimensions", DIMENSIONS))


def label_columns(utterances: pd.DataFrame) -> list[str]:
    """The label columns a cache keeps: :data:`LABEL_COLUMNS`, and ``split`` for a corpus with an
    official partition (so a KEMDy cache's columns, and its key, are what they were)."""
    return [*LABEL_COLUMNS, "split"] if has_partition(utterances) else list(LABEL_COLUMNS)

class DigestMemo:
    """WAV content hashes remembered by (path, size, mtime) in the cache directory.

    Hashing the content (not the path or mtime) keeps the cache valid when a corpus is copied or
    moved; the memo makes that a stat() per file after the first build.
    """

    def __init__(self, cache_dir: Path):
        self.path = cache_dir / DIGEST_MEMO
        try:
            self.table: dict[str, list] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.table = {}
        self.dirty = False

    def digest(self, path: str | Path) -> str:
        real = os.path.realpath(path)
        st = os.stat(real)
        hit = self.table.get(real)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        value = file_digest(real)
        self.table[real] = [st.st_size, st.st_mtime_ns, value]
        self.dirty = True
        return value

    def save(self) -> None:
        if not self.dirty:
            return
        # Memo only: a lost race between two writers costs a re-hash, never a wrong answer, and so does
        # a memo that could not be written (a full disk is reported by the build that follows).
        try:
            write_atomic(self.path, json.dumps(self.table))
        except OSError as err:
            log.warning("could not save the WAV digest memo %s (%s); the WAVs are hashed again next time",
                        self.path, err)


def _plain(value: Any) -> Any:
    """numpy / pandas scalars and arrays → JSON-able Python values (stable across versions)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def fingerprint(utterances: pd.DataFrame, wav_digests: Sequence[str], audio_identity: str,
                text_identity: str, max_seconds: float | None, layers: str = "last", *,
                classes: Sequence[str] = EMOTIONS, dimensions: Sequence[str] = DIMENSIONS) -> str:
    """Cache key: corpus content + encoder identities + audio settings (and the cache format).

    Not where or how the vectors were computed (driver or cluster, batch sizes): those do not change them.
    The class names (vote order) and dimensions are part of the key where they are not KEMDy's.
    """
    h = hashlib.sha256()
    columns = label_columns(utterances)
    header = {"version": FEATURES_VERSION, "audio": audio_identity, "text": text_identity,
              "max_seconds": max_seconds, "columns": columns}
    if layers != "last":  # a last-layer cache keeps the key it had before stacks existed
        header["layers"] = layers
    # a KEMDy cache keeps the key it had before other corpora existed
    if tuple(classes) != EMOTIONS:
        header["classes"] = list(classes)
    if tuple(dimensions) != DIMENSIONS:
        header["dimensions"] = list(dimensions)
    h.update(json.dumps(header, sort_keys=True).encode())
    cols = ["segment_id", "text", *columns]
    for row, digest in zip(utterances[cols].itertuples(index=False, name=None), wav_digests, strict=True):
        h.update(json.dumps([_plain(v) for v in row] + [digest], ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()[:24]


class Keyed(NamedTuple):
    """A corpus and its two encoders as every cache keys them (:func:`keyed`)."""

    corpus: Any
    utterances: pd.DataFrame
    digests: list[str]  # per utterance, its WAV's content digest
    classes: tuple[str, ...]
    dimensions: tuple[str, ...]
    audio: tuple[Any, str]  # the encoder as given (a path or hub id stays unloaded) and its identity
    text: tuple[Any, str]


def keyed(corpus: Any, audio_encoder: Any, text_encoder: Any, cache_dir: Path, device: Any, *,
          quiet: bool = False) -> Keyed:
    """What the feature, input and sequence caches key on: the corpus read, its utterance table, every
    WAV's digest (memoised in ``cache_dir``), its class names and dimensions, and each encoder pinned to
    its identity from its files where possible, so that a cache hit never loads a model (``quiet``: a
    model that must be loaded to be pinned loads without progress bars)."""
    corpus = read_corpus(corpus)
    utterances = utterance_table(corpus)
    classes, dimensions = corpus_labels(corpus)
    cache_dir.mkdir(parents=True, exist_ok=True)
    memo = DigestMemo(cache_dir)
    digests = [memo.digest(p) for p in utterances["wav_path"]]
    memo.save()
    return Keyed(corpus, utterances, digests, classes, dimensions, pin(audio_encoder, "audio", device, quiet=quiet),
                 pin(text_encoder, "text", device, quiet=quiet))

"""The feature cache's rows as an Arrow dataset: one row per utterance, its two vectors and its labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from erc.vocab import EMOTIONS


def vote_array(votes: Sequence[Any], n_classes: int = len(EMOTIONS)) -> np.ndarray:
    """(N, n_classes) votes per class: int64 when every vote is a whole number (KEMDy's counts, so their
    caches keep their contents), float64 otherwise (a rater naming n categories gives 1/n to each)."""
    array = np.array([np.asarray(v, dtype=np.float64) for v in votes])
    if array.ndim != 2 or array.shape[1] != n_classes:
        raise ValueError(f"votes must be {n_classes} values per utterance (one per class), got shape {array.shape}")
    return array.astype(np.int64) if np.array_equal(array, np.round(array)) else array


def to_dataset(utterances: pd.DataFrame, audio: np.ndarray, text: np.ndarray, *,
               n_classes: int = len(EMOTIONS)) -> Any:
    import datasets
    from datasets import Features, List, Value

    votes = vote_array(utterances["votes"], n_classes)
    features = Features({
        "segment_id": Value("string"),
        "audio_vec": List(Value("float32"), length=audio.shape[1]),
        "text_vec": List(Value("float32"), length=text.shape[1]),
        "votes": List(Value(str(votes.dtype)), length=n_classes),
        "majority": Value("int64"),
        "valence": Value("float32"),
        "arousal": Value("float32"),
        "fold": Value("int64"),
        "corpus": Value("string"),
        "session": Value("int64"),
        # an official partition's part (erc.vocab.PARTITIONS), only for a corpus that has one
        **({"split": Value("string")} if "split" in utterances.columns and has_partition(utterances) else {}),
    })
    columns = {
        "segment_id": utterances["segment_id"].astype(str).tolist(),
        "audio_vec": audio,
        "text_vec": text,
        "votes": votes,
        "majority": utterances["majority"].to_numpy(np.int64),
        "valence": utterances["valence"].to_numpy(np.float32),
        "arousal": utterances["arousal"].to_numpy(np.float32),
        "fold": utterances["fold"].to_numpy(np.int64),
        "corpus": utterances["corpus"].astype(str).tolist(),
        "session": utterances["session"].to_numpy(np.int64),
    }
    if "split" in features:
        columns["split"] = utterances["split"].astype(str).tolist()
    return datasets.Dataset.from_dict(columns, features=features)


def has_partition(utterances: pd.DataFrame) -> bool:
    """Whether any utterance belongs to an official partition (its ``split`` column is set)."""
    return "split" in utterances.columns and bool((utterances["split"].astype(str) != "").any())

"""The feature cache's rows as an Arrow dataset: one row per utterance, its two vectors and its labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from erc.vocab import N_CLASSES


def to_dataset(utterances: pd.DataFrame, audio: np.ndarray, text: np.ndarray) -> Any:
    import datasets
    from datasets import Features, List, Value

    votes = np.array([np.asarray(v, dtype=np.int64) for v in utterances["votes"]])
    if votes.ndim != 2 or votes.shape[1] != N_CLASSES:
        raise ValueError(f"votes must be {N_CLASSES} counts per utterance, got shape {votes.shape}")
    features = Features({
        "segment_id": Value("string"),
        "audio_vec": List(Value("float32"), length=audio.shape[1]),
        "text_vec": List(Value("float32"), length=text.shape[1]),
        "votes": List(Value("int64"), length=N_CLASSES),
        "majority": Value("int64"),
        "valence": Value("float32"),
        "arousal": Value("float32"),
        "fold": Value("int64"),
        "corpus": Value("string"),
        "session": Value("int64"),
    })
    return datasets.Dataset.from_dict({
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
    }, features=features)


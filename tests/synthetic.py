"""Synthetic feature rows with learnable signal in both modalities, for tests that must not wait
for real encoders."""

from __future__ import annotations

import numpy as np

from erc.labels import hard
from erc.model import N_CLASSES
from erc.table import FeatureTable

# Synthetic classes sit on a 3×3 grid of (arousal level, valence level). The audio vector carries the
# arousal level (and the continuous arousal rating), the text vector the valence level (and valence):
# every class shares its audio level with another class and its text level with another, so no
# single modality separates the seven classes — only their combination does.
_SYNTH_GRID = {0: (2, 1), 1: (1, 0), 2: (2, 0), 3: (1, 1), 4: (1, 2), 5: (0, 0), 6: (0, 1)}
_SYNTH_PRIOR = np.array([0.08, 0.07, 0.12, 0.33, 0.18, 0.12, 0.10])


def synthetic_features(
    n: int = 1250,
    d_audio: int = 32,
    d_text: int = 48,
    seed: int = 0,
    noise: float = 2.0,
    agreement: float = 0.5,
    n_sessions: int = 20,
    n_folds: int = 5,
) -> FeatureTable:
    """Feature rows with learnable signal in both modalities, in the feature dataset's columns.

    For tests and benchmarks that must not wait for real encoders. Each utterance has a true class;
    10 raters vote for it with probability ``agreement`` (else uniformly for another class), so ties
    and minority votes occur as in the corpora. Sessions are contiguous blocks; fold = session group.
    """
    rng = np.random.default_rng(seed)
    true = rng.choice(N_CLASSES, size=n, p=_SYNTH_PRIOR)
    a_level = np.array([_SYNTH_GRID[c][0] for c in true])
    v_level = np.array([_SYNTH_GRID[c][1] for c in true])
    arousal = np.clip(1.5 + 1.2 * a_level + 0.5 * rng.standard_normal(n), 1.0, 5.0)
    valence = np.clip(1.5 + 1.2 * v_level + 0.5 * rng.standard_normal(n), 1.0, 5.0)
    # random directions: one per level plus one for the continuous rating, in each modality
    a_dirs, t_dirs = rng.standard_normal((4, d_audio)), rng.standard_normal((4, d_text))
    audio = np.eye(3)[a_level] @ a_dirs[:3] + 0.5 * (arousal - 3)[:, None] * a_dirs[3]
    text = np.eye(3)[v_level] @ t_dirs[:3] + 0.5 * (valence - 3)[:, None] * t_dirs[3]
    audio = audio + noise * rng.standard_normal((n, d_audio))
    text = text + noise * rng.standard_normal((n, d_text))
    probs = np.full((n, N_CLASSES), (1 - agreement) / (N_CLASSES - 1))
    probs[np.arange(n), true] = agreement
    votes = np.stack([rng.multinomial(10, p) for p in probs])
    session = np.arange(n) * n_sessions // n
    return FeatureTable(
        segment_id=np.array([f"Synth{s + 1:02d}_{i:05d}" for i, s in enumerate(session)]),
        corpus=np.array(["synthetic"] * n),
        session=session.astype(np.int64),
        fold=(session * n_folds // n_sessions).astype(np.int64),
        audio=audio.astype(np.float32),
        text=text.astype(np.float32),
        votes=votes.astype(np.int64),
        majority=hard(votes).astype(np.int64),
        valence=valence.astype(np.float32),
        arousal=arousal.astype(np.float32),
    )




def with_synthetic_sequences(table: FeatureTable, seed: int = 0, max_len: int = 4) -> FeatureTable:
    """``table`` with token sequences for heads that read them (``xattn``): each utterance's audio and
    text vector repeated over 1..``max_len`` positions, each position with a little noise of its own, so
    the sequences carry the vectors' signal (their mean is the vector, up to the noise)."""
    from erc.sequences import Sequences

    rng = np.random.default_rng(seed)
    stores = {}
    for modality in ("audio", "text"):
        vectors = getattr(table, modality)
        lengths = rng.integers(1, max_len + 1, size=len(table))
        values = np.repeat(vectors, lengths, axis=0) + 0.1 * rng.standard_normal((int(lengths.sum()), vectors.shape[1]))
        stores[modality] = Sequences(values.astype(np.float16), np.concatenate([[0], np.cumsum(lengths)]))
    return table.with_sequences(stores)

"""Shared pieces of the fixture/demo writers of the English corpora (IEMOCAP, MSP-Podcast, CREMA-D, manifest).

The signal follows the KEMDy demo (:mod:`erc.data.demo`): the audio carries arousal (its voice), the
text carries valence (its share of positive words), so a sweep on a generated corpus has something
to learn. Short clips keep the fixtures small.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from erc.data.demo import _render, _voice, _write_wav

FILLER = ["well", "today", "we", "the", "meeting", "home", "yesterday", "friend", "time", "so", "now", "together"]
POSITIVE = ["great", "happy", "thanks", "fun", "wonderful", "love", "glad", "nice"]
NEGATIVE = ["awful", "sad", "annoying", "tired", "angry", "scared", "upset", "hate"]


def write_wav(path: Path, rng: np.random.Generator, arousal: float, *, female: bool = True,
              seconds: float | None = None, sr: int = 16000) -> float:
    """A short voice whose loudness, pitch and rate follow ``arousal`` (1–5); returns its length."""
    seconds = float(seconds if seconds is not None else rng.uniform(0.6, 1.4))
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_wav(path, _render(_voice(rng, seconds, sr, float(arousal), female, bool(rng.integers(0, 2)))), sr)
    return seconds


def sentence(rng: np.random.Generator, valence: float) -> str:
    """A few filler words and sentiment words, positive with probability sigmoid(2.5 (valence − 3))."""
    share = 1 / (1 + np.exp(-2.5 * (valence - 3)))
    words = list(rng.choice(FILLER, size=int(rng.integers(2, 4))))
    words += [str(rng.choice(POSITIVE if rng.random() < share else NEGATIVE)) for _ in range(int(rng.integers(2, 4)))]
    rng.shuffle(words)
    return " ".join(words) + "."


def to_scale(x: float, scale: tuple[float, float]) -> float:
    """A 1–5 value moved onto another rating scale."""
    lo, hi = scale
    return lo + (x - 1) * (hi - lo) / 4

"""The input cache of finetune mode: every utterance decoded once, every transcript tokenized once.

``build_inputs(corpus, audio_encoder, text_encoder, cache_dir)`` returns an :class:`InputTable`:
the labels of every utterance (as in :class:`erc.table.FeatureTable`) and, in two flat arrays, its
waveform — mixed to mono, resampled to the audio encoder's rate and cropped to ``max_seconds``,
stored as int16 (or float16) — and the token ids of its cleaned and of its raw transcript (lines
joined), tokenized with the text encoder's tokenizer up to the encoder's own limit. A finetune trial
cuts, pads and normalises from these; it never opens a WAV file.

The cache lives in ``cache_dir/<key>/`` with the feature cache's guarantees: the key covers the
corpus content (the feature cache's fingerprint: ids, transcripts, labels, folds and a content hash
of every WAV), the raw transcripts, the encoders' identities, the crop and the storage type; one
process builds a key under a lock and publishes it atomically (:func:`erc.cache.build_once`).

The table is a few plain numpy arrays, so Ray's object store carries it to each node once and every
trial there reads it without a copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from erc.atomic import Need
from erc.audio import MAX_SECONDS, load_audio
from erc.cache import build_once, marked
from erc.encoders import AudioArg, AudioEncoder, TextArg, TextEncoder, load_encoder
from erc.features.key import fingerprint, keyed
from erc.features.schema import has_partition, vote_array
from erc.protocol import join_lines
from erc.table import LABEL_SPACE, Rows
from erc.vocab import DIMENSIONS, EMOTIONS, EXCLUDED_FILE, META_FILE

log = logging.getLogger(__name__)

INPUTS_VERSION = 1  # bump when the stored layout or the decoding changes meaning
WaveDtype = Literal["int16", "float16"]
_INT16_SCALE = 32767.0


@dataclass(frozen=True, eq=False)
class InputBlobs:
    """What all rows share: the concatenated waveforms and token ids, and how to read them."""

    waves: np.ndarray  # (total samples,) int16 or float16
    tokens: np.ndarray  # (total tokens,) int32
    sample_rate: int
    max_seconds: float | None  # the crop the waveforms were cut at (None: whole files)
    pad_token_id: int
    eos_token_id: int


@dataclass(frozen=True, eq=False)
class InputTable(Rows):
    """One row per utterance: labels, fold, and where its waveform and token ids sit in ``blobs``."""

    segment_id: np.ndarray  # (N,) str
    corpus: np.ndarray  # (N,) str
    session: np.ndarray  # (N,) int
    fold: np.ndarray  # (N,) int
    votes: np.ndarray  # (N, classes): int64 counts, float64 where fractional
    majority: np.ndarray  # (N,) int, -1 for a tie
    valence: np.ndarray  # (N,) float32
    arousal: np.ndarray  # (N,) float32
    wave_start: np.ndarray  # (N,) int64 offsets into blobs.waves
    wave_len: np.ndarray  # (N,) int64
    text_start: np.ndarray  # (N,) int64 offsets into blobs.tokens: the cleaned transcript's ids
    text_len: np.ndarray
    raw_start: np.ndarray  # the raw transcript's ids (lines joined)
    raw_len: np.ndarray
    blobs: InputBlobs
    partition: np.ndarray | None = None  # (N,) str: the official partition's part (`split`), if any
    classes: tuple[str, ...] = EMOTIONS  # the vote columns' class names, in order
    dimensions: tuple[str, ...] = DIMENSIONS  # the dimensional targets, () for a corpus without them

    def _rows(self) -> list[str]:
        return [f.name for f in fields(self)
                if f.name != "blobs" and f.name not in LABEL_SPACE and getattr(self, f.name) is not None]

    def __post_init__(self) -> None:
        lengths = {name: len(getattr(self, name)) for name in self._rows()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"input columns differ in length: {lengths}")

    def subset(self, index: np.ndarray) -> InputTable:
        """The rows ``index`` selects (a boolean mask or positions); the blobs are shared, not copied."""
        index = np.asarray(index)
        return InputTable(**{name: getattr(self, name)[index] for name in self._rows()}, blobs=self.blobs,
                          classes=self.classes, dimensions=self.dimensions)

    def split(self, valid: int, *, exclude: Sequence[int] = ()) -> tuple[InputTable, InputTable]:
        return super().split(valid, exclude=exclude)

    def wave(self, i: int) -> np.ndarray:
        """Row ``i``'s waveform as float32 in [-1, 1]."""
        start, n = int(self.wave_start[i]), int(self.wave_len[i])
        raw = self.blobs.waves[start : start + n]
        if raw.dtype == np.int16:
            return raw.astype(np.float32) / _INT16_SCALE
        return raw.astype(np.float32)

    def token_ids(self, i: int, *, raw: bool = False) -> np.ndarray:
        """Row ``i``'s token ids (special tokens included) of the cleaned or of the raw transcript."""
        start, n = (self.raw_start[i], self.raw_len[i]) if raw else (self.text_start[i], self.text_len[i])
        return self.blobs.tokens[int(start) : int(start) + int(n)]

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, n).nbytes for n in self._rows()) + self.blobs.waves.nbytes + self.blobs.tokens.nbytes


def _to_storage(wave: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "int16":
        return np.round(np.clip(wave, -1.0, 1.0) * _INT16_SCALE).astype(np.int16)
    return wave.astype(np.float16)


def input_key(utterances: pd.DataFrame, digests: list[str], audio_id: str, text_id: str,
              max_seconds: float | None, wave_dtype: str, *, classes: Sequence[str] = EMOTIONS,
              dimensions: Sequence[str] = DIMENSIONS) -> str:
    """Cache key: the feature cache's corpus fingerprint, the raw transcripts and the input settings."""
    h = hashlib.sha256()
    h.update(fingerprint(utterances, digests, audio_id, text_id, max_seconds, classes=classes,
                         dimensions=dimensions).encode())
    h.update(json.dumps({"inputs_version": INPUTS_VERSION, "wave_dtype": wave_dtype}).encode())
    for raw in utterances["text_raw"].astype(str):
        h.update(raw.encode())
        h.update(b"\0")
    return "inputs-" + h.hexdigest()[:24]


def _write(tmp: Path, utterances: pd.DataFrame, audio: AudioEncoder, text: TextEncoder,
           max_seconds: float | None, wave_dtype: str, progress: bool, need: Need,
           classes: Sequence[str] = EMOTIONS, dimensions: Sequence[str] = DIMENSIONS) -> None:
    t0 = time.perf_counter()
    sr = audio.sample_rate
    paths = utterances["wav_path"].astype(str).tolist()
    waves = [_to_storage(load_audio(p, max_seconds, sr), wave_dtype)
             for p in tqdm(paths, desc="decode audio", unit="utt", disable=not progress)]
    wave_len = np.array([len(w) for w in waves], dtype=np.int64)
    t1 = time.perf_counter()
    tokenizer = text.tokenizer
    clean = tokenizer(utterances["text"].astype(str).tolist(), truncation=True, max_length=text.max_length)
    raw = tokenizer([join_lines(t) for t in utterances["text_raw"].astype(str)], truncation=True,
                    max_length=text.max_length)
    ids = list(clean["input_ids"]) + list(raw["input_ids"])
    lens = np.array([len(x) for x in ids], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    n = len(utterances)
    votes = vote_array(utterances["votes"], len(classes))
    # waves, token ids, row columns; decoded in memory: nothing is written yet
    need.require(sum(w.nbytes for w in waves) + 4 * int(lens.sum()) + 512 * n)
    np.save(tmp / "waves.npy", np.concatenate(waves) if waves else np.zeros(0, np.int16))
    np.save(tmp / "tokens.npy", np.concatenate([np.asarray(x, np.int32) for x in ids]))
    np.savez(
        tmp / "rows.npz",
        segment_id=utterances["segment_id"].astype(str).to_numpy(dtype=str),
        corpus=utterances["corpus"].astype(str).to_numpy(dtype=str),
        session=utterances["session"].to_numpy(np.int64),
        fold=utterances["fold"].to_numpy(np.int64),
        votes=votes,
        majority=utterances["majority"].to_numpy(np.int64),
        valence=utterances["valence"].to_numpy(np.float32),
        arousal=utterances["arousal"].to_numpy(np.float32),
        wave_start=np.concatenate([[0], np.cumsum(wave_len)[:-1]]).astype(np.int64),
        wave_len=wave_len,
        text_start=starts[:n], text_len=lens[:n], raw_start=starts[n:], raw_len=lens[n:],
        **({"partition": utterances["split"].astype(str).to_numpy(dtype=str)} if has_partition(utterances) else {}),
    )
    meta = {
        "inputs_version": INPUTS_VERSION, "n_utterances": n, "sample_rate": sr, "max_seconds": max_seconds,
        "wave_dtype": wave_dtype, "pad_token_id": int(tokenizer.pad_token_id),
        "eos_token_id": int(tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id),
        "max_length": text.max_length,
        "audio_encoder": {"name": audio.name, "identity": audio.identity},
        "text_encoder": {"name": text.name, "identity": text.identity},
        "classes": list(classes), "dimensions": list(dimensions),  # what votes and ratings mean
        "decode_seconds": round(t1 - t0, 3), "tokenize_seconds": round(time.perf_counter() - t1, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (tmp / META_FILE).write_text(json.dumps(meta, indent=1))  # last: marks the directory complete


def load_inputs(path: str | Path) -> InputTable:
    """Read a published input cache directory."""
    path = Path(path)
    meta = json.loads((path / META_FILE).read_text())
    with np.load(path / "rows.npz") as rows:
        columns = {k: rows[k] for k in rows.files}
    blobs = InputBlobs(waves=np.load(path / "waves.npy"), tokens=np.load(path / "tokens.npy"),
                       sample_rate=int(meta["sample_rate"]), max_seconds=meta["max_seconds"],
                       pad_token_id=int(meta["pad_token_id"]),
                       eos_token_id=int(meta["eos_token_id"]))
    # a cache from before other corpora is KEMDy's
    space = {name: tuple(meta[name]) for name in LABEL_SPACE if name in meta}
    return InputTable(**columns, blobs=blobs, **space)


def input_meta(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / META_FILE).read_text())


def build_inputs(corpus: Any, audio_encoder: AudioArg, text_encoder: TextArg, cache_dir: str | Path, *,
                 max_seconds: float | None = MAX_SECONDS, wave_dtype: WaveDtype = "int16",
                 progress: bool = True) -> tuple[InputTable, Path]:
    """The input table of ``corpus`` for these encoders, from ``cache_dir/<key>/`` (built once).

    Encoders given as a directory or hub id are loaded only when the cache must be built (their
    identities come from their files). Returns the table and its directory. A full disk is an
    :class:`erc.atomic.DiskFullError` naming the directory and the space the cache needs.
    """
    if wave_dtype not in ("int16", "float16"):
        raise ValueError(f"wave_dtype must be int16 or float16, got {wave_dtype!r}")
    cache_dir = Path(cache_dir).expanduser()
    corpus, utterances, digests, classes, dimensions, (audio_encoder, audio_id), (text_encoder, text_id) = keyed(
        corpus, audio_encoder, text_encoder, cache_dir, "cpu")
    key = input_key(utterances, digests, audio_id, text_id, max_seconds, wave_dtype, classes=classes,
                    dimensions=dimensions)

    def build(tmp: Path, need: Need) -> None:
        # an encoder passed loaded stays where it is; one named by a directory or hub id loads on the CPU
        audio = load_encoder(audio_encoder, "audio", None if isinstance(audio_encoder, AudioEncoder) else "cpu")
        text = load_encoder(text_encoder, "text", None if isinstance(text_encoder, TextEncoder) else "cpu")
        log.info("inputs: decoding %d utterances into %s", len(utterances), cache_dir / key)
        _write(tmp, utterances, audio, text, max_seconds, wave_dtype, progress, need, classes, dimensions)
        if hasattr(corpus, "save_exclusions"):
            corpus.save_exclusions(tmp / EXCLUDED_FILE)

    path = build_once(cache_dir / key, build, load=marked(META_FILE), what="the input cache")
    table = load_inputs(path)
    if table.segment_id.tolist() != utterances["segment_id"].astype(str).tolist():
        raise RuntimeError(f"input cache {path} does not match the corpus it was keyed on")
    return table, path

"""The sequence cache: the encoders' last-layer token sequences of every utterance, built once (DESIGN §13).

``build_sequences(corpus, audio_encoder, text_encoder, cache_dir)`` returns ``{"audio": Sequences,
"text": Sequences}`` (:mod:`erc.sequences`: ragged float16 stores, memory-mapped) and their directory
``cache_dir/seq-<key>/``. The key is the feature cache's fingerprint (corpus content, encoder
identities, crop) plus the caps (:data:`~erc.sequences.MAX_FRAMES` frames, :data:`~erc.sequences.MAX_TOKENS`
tokens) and the format's version, so a cache is rebuilt exactly when the sequences would differ.

Size per utterance, float16: (frames × D_a + tokens × D_t) × 2 B. At paper scale
(wav2vec2-large-xlsr-korean and klue/roberta-large, D = 1024 each) at most (349 + 128) × 2 KiB ≈ 0.93 MiB
(a 7 s utterance with a 128-token transcript); a typical 3 s utterance with 30 tokens ≈ 0.35 MiB. The
base models (D = 768) take ¾ of that.

The build is the layer stacks' (:mod:`erc.features.cache`): one process under the lock, into a temporary
directory published by one ``rename`` (:func:`erc.cache.build_once`), so a killed build leaves nothing a
later run takes for a cache; the space the files need is checked before the encoders run
(:class:`erc.atomic.Need`), and progress is shown as the feature cache shows it. Every row's length is
known before extraction (frames from the sample count, tokens from the tokenizer), so the files are
allocated once at their exact size and filled in any batch order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from erc.atomic import Need
from erc.audio import MAX_SECONDS, audio_samples
from erc.cache import build_once
from erc.encoders import AudioArg, AudioEncoder, TextArg, TextEncoder, load_encoder
from erc.features.extract import DEFAULT_BATCH_SECONDS, DEFAULT_TEXT_BATCH, ExtractionJob, _progress
from erc.features.key import fingerprint, keyed
from erc.sequences import MAX_FRAMES, MAX_TOKENS, OFFSET_FILES, SEQUENCE_FILES, Sequences, open_sequences
from erc.vocab import META_FILE, MODALITIES

log = logging.getLogger(__name__)

SEQUENCES_VERSION = 1  # bump when the stored layout or the extraction changes meaning
IDS_FILE = "segment_id.npy"  # the rows' segment ids, in corpus order: what a load checks against the corpus
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def sequence_key(feature_fingerprint: str, max_frames: int, max_tokens: int) -> str:
    """The cache directory's name: the feature cache's fingerprint, the caps and the format."""
    h = hashlib.sha256(feature_fingerprint.encode())
    h.update(json.dumps({"version": SEQUENCES_VERSION, "max_frames": max_frames, "max_tokens": max_tokens}).encode())
    return "seq-" + h.hexdigest()[:24]


def frame_counts(job: ExtractionJob, max_frames: int) -> np.ndarray:
    """(N,) frames each utterance keeps: the encoder's output length for its (cropped) samples, capped."""
    enc = job.audio_encoder
    samples = torch.tensor([max(audio_samples(p, job.max_seconds, enc.sample_rate), enc.min_samples)
                            for p in job.wav_paths])
    return np.minimum(enc.model._get_feat_extract_output_lengths(samples).numpy().astype(np.int64), max_frames)


def token_counts(texts: list[str], text: TextEncoder, max_tokens: int) -> np.ndarray:
    """(N,) tokens each transcript keeps: its tokenized length (as the encoder truncates it), capped."""
    ids = text.tokenizer(texts, truncation=True, max_length=text.max_length)["input_ids"]
    return np.minimum(np.array([len(x) for x in ids], dtype=np.int64), max_tokens)


class _Store:
    """One modality's ragged float16 file, allocated at its exact size and filled row by row."""

    def __init__(self, path: Path, lengths: np.ndarray, dim: int) -> None:
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.values = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(int(self.offsets[-1]), dim))
        self.filled = np.zeros(len(lengths), bool)
        self.clipped = 0

    def put(self, rows: list[int], parts: list[np.ndarray]) -> None:
        for row, part in zip(rows, parts, strict=True):
            start, end = self.offsets[row], self.offsets[row + 1]
            if len(part) != end - start:
                raise RuntimeError(f"row {row}: the encoder gave {len(part)} positions, {end - start} were expected")
            # float16's range is ±65504: a rare outlier is clipped (and counted in the build record)
            # rather than stored as inf, which would poison every statistic over the store
            self.clipped += int((np.abs(part) > _FLOAT16_MAX).sum())
            self.values[start:end] = np.clip(part, -_FLOAT16_MAX, _FLOAT16_MAX)
            self.filled[row] = True


def _write(tmp: Path, job: ExtractionJob, max_frames: int, max_tokens: int, need: Need) -> dict[str, Any]:
    audio, text = job.audio_encoder, job.text_encoder
    lengths = {"audio": frame_counts(job, max_frames), "text": token_counts(job.texts, text, max_tokens)}
    dims = {"audio": audio.dim, "text": text.dim}
    # checked before minutes of extraction: float16 values, offsets, ids
    need.require(sum(2 * int(lengths[m].sum()) * dims[m] for m in MODALITIES) + 256 * len(job))
    stores = {m: _Store(tmp / SEQUENCE_FILES[m], lengths[m], dims[m]) for m in MODALITIES}
    t0 = time.perf_counter()
    with _progress(len(job), "audio sequences", job.progress) as bar:
        for batch in job.audio_batches():
            stores["audio"].put(batch, audio.sequences(job.read_audio(batch), max_frames))
            bar.update(len(batch))
    t1 = time.perf_counter()
    with _progress(len(job), "text sequences", job.progress) as bar:
        for batch in job.text_batches():
            stores["text"].put(batch, text.sequences([job.texts[i] for i in batch], max_tokens))
            bar.update(len(batch))
    t2 = time.perf_counter()
    for modality, store in stores.items():
        if not store.filled.all():
            raise RuntimeError(f"extraction returned no {modality} sequence for {(~store.filled).sum()} utterance(s)")
        store.values.flush()
        np.save(tmp / OFFSET_FILES[modality], store.offsets)
        if store.clipped:
            log.warning("sequences: %d %s values beyond float16's range were clipped", store.clipped, modality)
    nbytes = sum(store.values.nbytes for store in stores.values())
    return {"audio_seconds": round(t1 - t0, 3), "text_seconds": round(t2 - t1, 3), "bytes": nbytes,
            "bytes_per_utterance": round(nbytes / max(len(job), 1)),
            "clipped": {m: s.clipped for m, s in stores.items()},
            "positions": {m: {"total": int(lengths[m].sum()), "max": int(lengths[m].max(initial=0))} for m in MODALITIES}}


def build_sequences(corpus: Any, audio_encoder: AudioArg, text_encoder: TextArg, cache_dir: str | Path, *,
                    max_seconds: float | None = MAX_SECONDS, max_frames: int = MAX_FRAMES,
                    max_tokens: int = MAX_TOKENS, batch_seconds: float = DEFAULT_BATCH_SECONDS,
                    text_batch_size: int = DEFAULT_TEXT_BATCH, device: str | torch.device | None = None,
                    progress: bool = True) -> tuple[dict[str, Sequences], Path]:
    """The last-layer sequences of every utterance of ``corpus`` (in its row order) and their directory,
    from ``cache_dir/seq-<key>/`` when it is current, else built there once (see the module doc).

    ``corpus``, the encoders, ``max_seconds`` and the batching: as :func:`erc.features.build_features`
    (encoders given as paths are not loaded when the cache is current). A full disk is an
    :class:`erc.atomic.DiskFullError` naming the directory and the space it needs.
    """
    if min(max_frames, max_tokens) < 1:
        raise ValueError(f"max_frames and max_tokens must be >= 1, got {max_frames} and {max_tokens}")
    cache_dir = Path(cache_dir).expanduser()
    corpus, utterances, digests, classes, dimensions, (audio_encoder, audio_id), (text_encoder, text_id) = keyed(
        corpus, audio_encoder, text_encoder, cache_dir, device)
    fp = fingerprint(utterances, digests, audio_id, text_id, max_seconds, classes=classes, dimensions=dimensions)
    key = sequence_key(fp, max_frames, max_tokens)
    ids = utterances["segment_id"].astype(str).to_numpy(dtype=str)
    built: dict[str, Any] = {}

    def build(tmp: Path, need: Need) -> None:
        audio = load_encoder(audio_encoder, "audio", device)
        text = load_encoder(text_encoder, "text", device)
        assert isinstance(audio, AudioEncoder) and isinstance(text, TextEncoder)
        log.info("sequences: building %s", cache_dir / key)
        job = ExtractionJob(utterances["wav_path"].astype(str).tolist(), utterances["text"].astype(str).tolist(),
                            audio, text, max_seconds=max_seconds, batch_seconds=batch_seconds,
                            text_batch_size=text_batch_size, progress=progress)
        info = _write(tmp, job, max_frames, max_tokens, need)
        np.save(tmp / IDS_FILE, ids)
        built.update({
            "sequences_version": SEQUENCES_VERSION, "feature_fingerprint": fp, "n_utterances": len(utterances),
            "max_seconds": max_seconds, "max_frames": max_frames, "max_tokens": max_tokens, "dtype": "float16",
            "audio_encoder": {"name": audio.name, "identity": audio_id, "dim": audio.dim},
            "text_encoder": {"name": text.name, "identity": text_id, "dim": text.dim},
            "device": str(audio.device), **info, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        (tmp / META_FILE).write_text(json.dumps(built, indent=1))  # last: marks the directory complete

    def load(path: Path) -> dict[str, Sequences] | None:
        if not (path / META_FILE).is_file():
            return None
        try:
            found = open_sequences(path)
            same_rows = np.array_equal(np.load(path / IDS_FILE), ids)
        except (OSError, ValueError) as err:
            log.warning("sequence cache %s is unreadable (%s); rebuilding", path, err)
            return None
        if set(found) != set(MODALITIES) or not same_rows:
            log.warning("sequence cache %s does not match the corpus; rebuilding", path)
            return None
        return found

    sequences = build_once(cache_dir / key, build, load=load, what="the sequence cache")
    if built:
        log.info("sequences: %d utterances in %.1f s (audio) + %.1f s (text), %.1f MiB (%.1f KiB per utterance) → %s",
                 len(utterances), built["audio_seconds"], built["text_seconds"], built["bytes"] / 2**20,
                 built["bytes_per_utterance"] / 2**10, cache_dir / key)
    else:
        log.info("sequences: reusing %s", cache_dir / key)
    return sequences, cache_dir / key

"""Running the frozen encoders over every utterance: the :class:`ExtractionJob` any :class:`Extractor`
runs, the :class:`Vectors` it fills, and the extractor of this process, :func:`extract_here`.

The vectors depend only on the job (inputs in corpus order, the encoders, the crop), never on where
or in which batches they are computed; the sweep layer runs the same job as a Ray Data job.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self

import numpy as np
from tqdm.auto import tqdm

from erc.audio import MAX_SECONDS, audio_samples, load_audio
from erc.encoders import AudioEncoder, TextEncoder
from erc.layers import LAYER_FILES

log = logging.getLogger(__name__)

DEFAULT_BATCH_SECONDS = 64.0  # padded audio per forward: ~9 × 7 s; fits a 16 GB GPU with xlsr-large
DEFAULT_TEXT_BATCH = 64


def length_buckets(lengths: Sequence[int], max_padded: int) -> list[list[int]]:
    """Indices grouped longest-first so each batch's padded size (count × longest) ≤ ``max_padded``.

    Sorting by length makes padding within a batch small; bounding count × longest (not the sum)
    bounds the memory of the padded tensor. An item longer than ``max_padded`` gets its own batch.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_padded:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


class _DoneLine:
    """Where stderr is a log, not a terminal: no redrawn bar, one plain line when the work is done."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.n = total, desc, 0

    def __enter__(self) -> Self:
        self.start = time.perf_counter()
        return self

    def update(self, n: int) -> None:
        self.n += n

    def __exit__(self, kind, *rest) -> None:
        if kind is None:
            print(f"{self.desc}: {self.n} utterances in {time.perf_counter() - self.start:.1f} s", file=sys.stderr)


def _progress(total: int, desc: str, enabled: bool) -> Any:
    """tqdm's bar on a terminal; a plain line in a log (a redrawn bar writes carriage returns there)."""
    if enabled and not sys.stderr.isatty():
        return _DoneLine(total, desc)
    return tqdm(total=total, desc=desc, unit="utt", disable=not enabled)


@dataclass(frozen=True)
class ExtractionJob:
    """One build's work, the same for every extractor: inputs in corpus order, the loaded encoders
    and the batching, so the vectors do not depend on where they are computed."""

    wav_paths: list[str]
    texts: list[str]
    audio_encoder: AudioEncoder
    text_encoder: TextEncoder
    max_seconds: float | None = MAX_SECONDS
    batch_seconds: float = DEFAULT_BATCH_SECONDS
    text_batch_size: int = DEFAULT_TEXT_BATCH
    layers: bool = False  # every hidden layer too (erc.layers), not only the last
    progress: bool = True

    def __len__(self) -> int:
        return len(self.wav_paths)

    def audio_batches(self) -> list[list[int]]:
        """Utterances grouped by length (:func:`length_buckets`), longest first."""
        enc = self.audio_encoder
        lengths = [max(audio_samples(p, self.max_seconds, enc.sample_rate), enc.min_samples) for p in self.wav_paths]
        return length_buckets(lengths, int(self.batch_seconds * enc.sample_rate))

    def text_batches(self) -> list[list[int]]:
        """Transcripts in batches of similar length, longest first."""
        order = sorted(range(len(self.texts)), key=lambda i: (-len(self.texts[i]), i))
        return [order[start:start + self.text_batch_size] for start in range(0, len(order), self.text_batch_size)]

    def read_audio(self, batch: Sequence[int]) -> list[np.ndarray]:
        return [load_audio(self.wav_paths[i], self.max_seconds, self.audio_encoder.sample_rate) for i in batch]

    def encode_audio(self, waves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """(B, D) last-layer vectors and, for an every-layer job, the (B, L, D) stack."""
        enc = self.audio_encoder
        return enc.pool_layers(waves) if self.layers else (enc.pool(waves), None)

    def encode_text(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        enc = self.text_encoder
        return enc.pool_layers(texts) if self.layers else (enc.pool(texts), None)


class Vectors:
    """What a build fills in, batch by batch and in any order: the last-layer vectors and, for an
    every-layer build, the stacks (float32 memory-mapped files in the build's directory until
    :meth:`finish` stores them compactly). Every row must be filled before the cache is published."""

    def __init__(self, job: ExtractionJob, directory: Path) -> None:
        n, self.directory = len(job), directory
        encoders = {"audio": job.audio_encoder, "text": job.text_encoder}
        self.vectors = {m: np.zeros((n, enc.dim), np.float32) for m, enc in encoders.items()}
        self.stacks = {m: np.lib.format.open_memmap(directory / f".{m}_layers.f32.npy", mode="w+", dtype=np.float32,
                                                    shape=(n, enc.n_layers, enc.dim))
                       for m, enc in encoders.items()} if job.layers else {}
        self.filled = {m: np.zeros(n, bool) for m in encoders}

    def put(self, modality: str, rows: Sequence[int], vectors: np.ndarray, stack: np.ndarray | None = None) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        self.vectors[modality][rows] = vectors
        if modality in self.stacks:
            if stack is None:
                raise ValueError(f"an every-layer build got {modality} vectors without their layer stack")
            self.stacks[modality][rows] = stack
        self.filled[modality][rows] = True

    def missing(self) -> dict[str, int]:
        return {m: int((~done).sum()) for m, done in self.filled.items() if not done.all()}

    def finish(self) -> dict[str, dict]:
        """Check that every row arrived; store each stack as float16 (float32 where a value would
        overflow float16). Returns what was stored, for the build record."""
        if missing := self.missing():
            raise RuntimeError(f"extraction returned no vectors for {missing} utterance(s); no cache was written")
        stored = {}
        for modality, stack in self.stacks.items():
            stack.flush()
            scratch, path = self.directory / f".{modality}_layers.f32.npy", self.directory / LAYER_FILES[modality]
            dtype = np.float16 if _fits_float16(stack) else np.float32
            if dtype == np.float16:  # half the bytes; see erc.layers for what it costs the heads
                half = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=stack.shape)
                for start in range(0, len(stack), 1024):
                    half[start:start + 1024] = stack[start:start + 1024]
                half.flush()
                scratch.unlink()
            else:
                log.warning("the %s layer stack exceeds float16's range: stored as float32", modality)
                os.replace(scratch, path)
            stored[modality] = {"file": path.name, "shape": list(stack.shape), "dtype": np.dtype(dtype).name}
        self.stacks = {}
        return stored


def _fits_float16(values: np.ndarray) -> bool:
    limit = float(np.finfo(np.float16).max)
    return all(np.isfinite(chunk).all() and float(np.abs(chunk).max(initial=0.0)) <= limit
               for chunk in (values[start:start + 1024] for start in range(0, len(values), 1024)))


class Extractor(Protocol):
    """Runs a job's encoders over every utterance into ``out``; returns facts for the build record
    (``extracted_on``, ``device``, ``audio_seconds``, ``text_seconds``, …). ``erc`` has one, this
    process (:func:`extract_here`); the sweep layer runs the same job as a Ray Data job."""

    def __call__(self, job: ExtractionJob, out: Vectors) -> dict[str, Any]: ...


def extract_here(job: ExtractionJob, out: Vectors) -> dict[str, Any]:
    """Both encoders in this process, audio in length-bucketed batches, then text."""
    t0 = time.perf_counter()
    batches = job.audio_batches()
    # Decode/resample the next batch in a thread while the model runs on this one.
    with ThreadPoolExecutor(max_workers=1) as pool, \
            _progress(len(job), "audio features", job.progress) as bar:
        pending = pool.submit(job.read_audio, batches[0]) if batches else None
        for k, batch in enumerate(batches):
            waves = pending.result()
            pending = pool.submit(job.read_audio, batches[k + 1]) if k + 1 < len(batches) else None
            out.put("audio", batch, *job.encode_audio(waves))
            bar.update(len(batch))
    t1 = time.perf_counter()
    with _progress(len(job), "text features", job.progress) as bar:
        for batch in job.text_batches():
            out.put("text", batch, *job.encode_text([job.texts[i] for i in batch]))
            bar.update(len(batch))
    t2 = time.perf_counter()
    _release_freed_memory()
    return {"extracted_on": "driver", "device": str(job.audio_encoder.device),
            "audio_seconds": round(t1 - t0, 3), "text_seconds": round(t2 - t1, 3)}


def _release_freed_memory() -> None:
    """Hand memory freed by extraction back to the OS (glibc only; elsewhere a no-op).

    Batches of varying shapes fragment glibc's heap: after extracting the demo corpus the process
    held ~1 GB of freed memory (RSS 1.8 GB → 0.9 GB after malloc_trim), which the sweep driver
    would otherwise keep for its whole life.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


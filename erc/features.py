"""The feature cache: each frozen encoder runs once per utterance, every trial reuses it (DESIGN §4).

``build_features(corpus, audio_encoder, text_encoder, cache_dir)`` returns a Hugging Face
``datasets.Dataset`` with one row per utterance (``segment_id``, ``audio_vec``, ``text_vec`` and the
label columns), stored under ``cache_dir/<fingerprint>/``. The fingerprint covers the corpus content
(ids, transcripts, labels, folds, and a content hash of every WAV), the encoders' identities and the
audio settings, so any change builds a new cache and an unchanged input never re-runs an encoder.

A build is written to a temporary directory and published by one ``rename``: a killed build leaves
only a ``.tmp-*`` directory, which no later run takes for a cache (and the next build removes).

CLI::

    python -m erc.features --data ROOT --audio-encoder ID_OR_DIR --text-encoder ID_OR_DIR --cache-dir DIR
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from erc.atomic import Need, build_lock, disk_full_errors, require_space
from erc.audio import MAX_SECONDS, audio_samples, load_audio
from erc.encoders import (
    AudioEncoder,
    TextEncoder,
    build_demo_encoders,
    describe,
    encoder_identity,
    file_digest,
    load_audio_encoder,
    load_text_encoder,
)
from erc.layers import LAYER_FILES, open_layers

log = logging.getLogger(__name__)

# Bump when the stored layout or the extraction changes meaning: every cache is then rebuilt.
FEATURES_VERSION = 1
LABEL_COLUMNS = ["votes", "majority", "valence", "arousal", "fold", "corpus", "session"]
REQUIRED_COLUMNS = ["segment_id", "wav_path", "text", *LABEL_COLUMNS]
N_CLASSES = 7
DEFAULT_BATCH_SECONDS = 64.0  # padded audio per forward: ~9 × 7 s; fits a 16 GB GPU with xlsr-large
DEFAULT_TEXT_BATCH = 64
META_FILE = "meta.json"
DIGEST_MEMO = "wav_digests.json"
LAYER_MODES = ("last", "all")  # what a cache holds: the last layer's vectors, or every hidden layer's too

AudioArg = str | Path | AudioEncoder
TextArg = str | Path | TextEncoder


def default_cache_dir() -> Path:
    """``$ERC_CACHE/features`` (``~/.cache/erc-sweeps/features`` by default), as the README says."""
    return Path(os.environ.get("ERC_CACHE", "~/.cache/erc-sweeps")).expanduser() / "features"


def _utterances(corpus: Any) -> pd.DataFrame:
    """Accept a Corpus, its utterance table, or a data root (read with erc.data.load_corpus)."""
    if isinstance(corpus, (str, Path)):
        from erc.data import load_corpus

        corpus = load_corpus(corpus)
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


# --------------------------------------------------------------------------------------------------
# fingerprint


class _DigestMemo:
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
        # Memo only: a lost race between two writers costs a re-hash, never a wrong answer.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".digests-")
        with os.fdopen(fd, "w") as fh:
            json.dump(self.table, fh)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.path)


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
                text_identity: str, max_seconds: float | None, layers: str = "last") -> str:
    """Cache key: corpus content + encoder identities + audio settings (and the cache format).

    Not where or how the vectors were computed (driver or cluster, batch sizes): those do not change them.
    """
    h = hashlib.sha256()
    header = {"version": FEATURES_VERSION, "audio": audio_identity, "text": text_identity,
              "max_seconds": max_seconds, "columns": LABEL_COLUMNS}
    if layers != "last":  # a last-layer cache keeps the key it had before stacks existed
        header["layers"] = layers
    h.update(json.dumps(header, sort_keys=True).encode())
    cols = ["segment_id", "text", *LABEL_COLUMNS]
    for row, digest in zip(utterances[cols].itertuples(index=False, name=None), wav_digests, strict=True):
        h.update(json.dumps([_plain(v) for v in row] + [digest], ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()[:24]


# --------------------------------------------------------------------------------------------------
# extraction


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


def _dataset(utterances: pd.DataFrame, audio: np.ndarray, text: np.ndarray) -> Any:
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


# --------------------------------------------------------------------------------------------------
# cache


def _is_complete(path: Path) -> bool:
    # meta.json is written last inside the temporary directory, before the rename that publishes it.
    return (path / META_FILE).is_file() and (path / "state.json").is_file()


def _load_cached(path: Path, utterances: pd.DataFrame) -> Any | None:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except (OSError, ValueError) as err:  # unreadable cache (ArrowInvalid is a ValueError): rebuild
        log.warning("feature cache %s is unreadable (%s); rebuilding", path, err)
        return None
    if ds.num_rows != len(utterances) or (
            ds.data.column("segment_id").to_pylist() != utterances["segment_id"].astype(str).tolist()):
        log.warning("feature cache %s does not match the corpus; rebuilding", path)
        return None
    try:
        expected = set(json.loads((path / META_FILE).read_text()).get("layer_stacks") or {})
        stacks = open_layers(path)
    except (OSError, ValueError) as err:
        log.warning("feature cache %s has unreadable layer stacks (%s); rebuilding", path, err)
        return None
    if set(stacks) != expected or any(len(s) != len(utterances) for s in stacks.values()):
        log.warning("feature cache %s lacks layer stacks its record names; rebuilding", path)
        return None
    return ds


def _remove_stale(cache_dir: Path, fp: str) -> None:
    """Drop leftovers of killed builds and a cache of ``fp`` found unusable.

    We hold ``fp``'s lock, so nothing of ``fp`` belongs to a live build. A temporary directory of
    another key is stale when nobody holds that key's lock (a killed process releases its locks).
    """
    for leftover in cache_dir.glob(".tmp-*"):
        key = leftover.name.split("-")[1]
        if key == fp:
            shutil.rmtree(leftover, ignore_errors=True)
            continue
        with open(cache_dir / f".{key}.lock", "a") as other:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # being built right now
            shutil.rmtree(leftover, ignore_errors=True)
    if (cache_dir / fp).exists():
        shutil.rmtree(cache_dir / fp)


@contextlib.contextmanager
def _hf_progress(enabled: bool) -> Iterator[None]:
    """Silence the transformers / datasets progress bars (loading, saving) when ``progress=False``.

    Both libraries only offer process-wide switches, so the previous state is restored afterwards.
    """
    import datasets
    import transformers.utils.logging as tf_logging

    was = datasets.is_progress_bar_enabled(), tf_logging.is_progress_bar_enabled()
    if not enabled:
        datasets.disable_progress_bars()
        tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        (datasets.enable_progress_bars if was[0] else datasets.disable_progress_bars)()
        (tf_logging.enable_progress_bar if was[1] else tf_logging.disable_progress_bar)()


def _resolve_audio(encoder: AudioArg, device: str | torch.device | None) -> AudioEncoder:
    if isinstance(encoder, AudioEncoder):
        return encoder.to(device) if device is not None else encoder
    return load_audio_encoder(encoder, device)


def _resolve_text(encoder: TextArg, device: str | torch.device | None) -> TextEncoder:
    if isinstance(encoder, TextEncoder):
        return encoder.to(device) if device is not None else encoder
    return load_text_encoder(encoder, device)


def build_features(corpus: Any, audio_encoder: AudioArg, text_encoder: TextArg, cache_dir: str | Path, *,
                   max_seconds: float | None = MAX_SECONDS, batch_seconds: float = DEFAULT_BATCH_SECONDS,
                   text_batch_size: int = DEFAULT_TEXT_BATCH, device: str | torch.device | None = None,
                   layers: str = "last", extractor: Extractor | None = None, progress: bool = True) -> Any:
    """Pooled audio/text vectors + labels for every utterance, from the cache when it is current.

    ``corpus``: a ``Corpus``, its utterance DataFrame, or a data root. Encoders: a local model
    directory, a hub id, or an already loaded ``AudioEncoder`` / ``TextEncoder``. Encoders given
    as paths are not even loaded when the cache is current. ``batch_seconds`` bounds the padded
    audio per forward pass; it does not change the vectors, so it is not part of the key.
    ``layers="all"`` also stores every hidden layer's vectors (:mod:`erc.layers`; a cache of its own).
    ``extractor`` computes the vectors of a missing cache (default :func:`extract_here`, this
    process); the key, the lock, the publishing and the vectors are the same whichever runs.
    Returns a ``datasets.Dataset`` read from ``cache_dir/<fingerprint>/``.
    """
    if layers not in LAYER_MODES:
        raise ValueError(f"layers={layers!r}; choose from {list(LAYER_MODES)}")
    cache_dir = Path(cache_dir).expanduser()
    # datasets' own bars redraw with carriage returns: only on a terminal
    with _hf_progress(progress and sys.stderr.isatty()), disk_full_errors(cache_dir, "the feature cache") as need:
        return _build_features(corpus, audio_encoder, text_encoder, cache_dir, need=need,
                               max_seconds=max_seconds, batch_seconds=batch_seconds,
                               text_batch_size=text_batch_size, device=device, layers=layers,
                               extractor=extractor or extract_here, progress=progress)


def _build_features(corpus: Any, audio_encoder: AudioArg, text_encoder: TextArg, cache_dir: Path, *, need: Need,
                    max_seconds: float | None, batch_seconds: float, text_batch_size: int,
                    device: str | torch.device | None, layers: str, extractor: Extractor, progress: bool) -> Any:
    utterances = _utterances(corpus)
    cache_dir.mkdir(parents=True, exist_ok=True)
    memo = _DigestMemo(cache_dir)
    digests = [memo.digest(p) for p in utterances["wav_path"]]
    memo.save()

    # Identities from the files where possible, so a cache hit never loads a model.
    audio_id = encoder_identity(audio_encoder, "audio")
    if audio_id is None:  # a hub id not yet downloaded: loading it is the only way to pin it
        audio_encoder = _resolve_audio(audio_encoder, device)
        audio_id = audio_encoder.identity
    text_id = encoder_identity(text_encoder, "text")
    if text_id is None:
        text_encoder = _resolve_text(text_encoder, device)
        text_id = text_encoder.identity
    fp = fingerprint(utterances, digests, audio_id, text_id, max_seconds, layers)
    final = cache_dir / fp

    if _is_complete(final) and (ds := _load_cached(final, utterances)) is not None:
        log.info("features: reusing %s", final)
        return ds

    # One builder per fingerprint: a concurrent build of the same key waits, then reuses.
    with build_lock(cache_dir / f".{fp}.lock"):
        if _is_complete(final) and (ds := _load_cached(final, utterances)) is not None:
            return ds
        _remove_stale(cache_dir, fp)
        audio_encoder = _resolve_audio(audio_encoder, device)
        text_encoder = _resolve_text(text_encoder, device)
        # Checked before minutes of extraction, not after. Float32 last-layer vectors, labels and
        # transcripts; with layers="all" also the stacks, whose float32 memory-mapped scratch and
        # float16 copy coexist at the end (a memory map on a full disk is a SIGBUS, not an error).
        dims = audio_encoder.dim + text_encoder.dim
        stacks = audio_encoder.dim * audio_encoder.n_layers + text_encoder.dim * text_encoder.n_layers
        need.bytes = len(utterances) * (4 * dims + (6 * stacks if layers == "all" else 0) + 1024)
        require_space(cache_dir, need.bytes, "the feature cache")
        log.info("features: building %s with\n%s", final, describe([audio_encoder, text_encoder]))
        tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".tmp-{fp}-{os.getpid()}-"))
        tmp.chmod(0o755)  # mkdtemp makes it private; a cache on shared storage is read by other users
        try:
            job = ExtractionJob(utterances["wav_path"].astype(str).tolist(), utterances["text"].astype(str).tolist(),
                                audio_encoder, text_encoder, max_seconds=max_seconds, batch_seconds=batch_seconds,
                                text_batch_size=text_batch_size, layers=layers == "all", progress=progress)
            out = Vectors(job, tmp)
            info = extractor(job, out)
            stacks = out.finish()  # raises unless every row arrived
            _dataset(utterances, out.vectors["audio"], out.vectors["text"]).save_to_disk(str(tmp))
            if hasattr(corpus, "save_exclusions"):
                corpus.save_exclusions(tmp / "excluded.csv")
            meta = {
                "fingerprint": fp, "features_version": FEATURES_VERSION, "n_utterances": len(utterances),
                "audio_encoder": {"name": audio_encoder.name, "identity": audio_id, "dim": audio_encoder.dim,
                                  "layers": audio_encoder.n_layers},
                "text_encoder": {"name": text_encoder.name, "identity": text_id, "dim": text_encoder.dim,
                                 "layers": text_encoder.n_layers},
                "max_seconds": max_seconds, "sample_rate": audio_encoder.sample_rate,
                "batch_seconds": batch_seconds, "layers": layers, "layer_stacks": stacks,
                "device": str(audio_encoder.device), **info,
                "corpora": sorted(utterances["corpus"].astype(str).unique().tolist()),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
            os.rename(tmp, final)  # atomic publish: before this line no complete cache exists
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("features: %d utterances in %.1f s (audio) + %.1f s (text) on the %s → %s", len(utterances),
             meta["audio_seconds"], meta["text_seconds"], meta["extracted_on"], final)
    ds = _load_cached(final, utterances)
    assert ds is not None, f"freshly written cache {final} does not load"
    return ds


def feature_meta(ds_or_path: Any) -> dict:
    """The build record (encoders, settings, timings) stored beside a cached dataset."""
    if isinstance(ds_or_path, (str, Path)):
        path = Path(ds_or_path)
    else:
        path = Path(ds_or_path.cache_files[0]["filename"]).parent
    return json.loads((path / META_FILE).read_text())


# --------------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m erc.features",
        description="Run the frozen encoders once per utterance and cache the pooled vectors "
                    "(a Hugging Face Arrow dataset under CACHE/<fingerprint>/).",
    )
    parser.add_argument("--data", required=True, help="data root holding KEMDy19/ and/or KEMDy20_v1_1/")
    parser.add_argument("--audio-encoder", help="wav2vec2 model: local save_pretrained directory or hub id "
                                                "(paper: kresnik/wav2vec2-large-xlsr-korean)")
    parser.add_argument("--text-encoder", help="RoBERTa model: local save_pretrained directory or hub id "
                                               "(paper: klue/roberta-large)")
    parser.add_argument("--demo", action="store_true",
                        help="build the small seeded demo encoders from the corpus transcripts into "
                             "CACHE/demo-encoders and use them (no hub needed)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="feature cache directory (default: $ERC_CACHE/features or ~/.cache/erc-sweeps/features)")
    parser.add_argument("--max-seconds", type=float, default=MAX_SECONDS,
                        help="crop audio to this many seconds; 0 keeps whole files (default 7, the paper's)")
    parser.add_argument("--batch-seconds", type=float, default=DEFAULT_BATCH_SECONDS,
                        help="padded audio seconds per forward pass (memory knob; vectors do not change)")
    parser.add_argument("--layers", choices=LAYER_MODES, default="last",
                        help="last: the last layer's vectors (default); all: every hidden layer's too, for heads "
                             "that read another layer or learn a weighted sum (a cache of its own)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.demo == bool(args.audio_encoder or args.text_encoder):
        parser.error("give --audio-encoder and --text-encoder, or --demo")
    if not args.demo and not (args.audio_encoder and args.text_encoder):
        parser.error("both --audio-encoder and --text-encoder are needed")
    from erc.data import load_corpus

    cache = args.cache_dir or default_cache_dir()
    corpus = load_corpus(args.data)
    audio_src, text_src = args.audio_encoder, args.text_encoder
    if args.demo:
        audio_src, text_src = build_demo_encoders(cache / "demo-encoders", corpus)
    ds = build_features(corpus, audio_src, text_src, cache, max_seconds=args.max_seconds or None,
                        batch_seconds=args.batch_seconds, device=args.device, layers=args.layers,
                        progress=not args.quiet)
    meta = feature_meta(ds)
    print(f"{ds.num_rows} utterances: audio_vec {meta['audio_encoder']['dim']}-d, "
          f"text_vec {meta['text_encoder']['dim']}-d")
    for modality, stack in (meta.get("layer_stacks") or {}).items():
        print(f"{modality} layers: {stack['shape'][1]} × {stack['shape'][2]}-d, {stack['dtype']} ({stack['file']})")
    print(f"cache: {Path(ds.cache_files[0]['filename']).parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

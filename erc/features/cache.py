"""The feature cache: each frozen encoder runs once per utterance, every trial reuses it (DESIGN §4).

``build_features(corpus, audio_encoder, text_encoder, cache_dir)`` returns a Hugging Face
``datasets.Dataset`` with one row per utterance (``segment_id``, ``audio_vec``, ``text_vec`` and the
label columns, :mod:`erc.features.schema`), stored under ``cache_dir/<fingerprint>/``
(:mod:`erc.features.key`). The vectors come from an :class:`~erc.features.extract.Extractor`.

A build is written to a temporary directory and published by one ``rename``
(:func:`erc.cache.build_once`): a killed build leaves only a ``.tmp-*`` directory, which no later run
takes for a cache (and the next build removes).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from erc.atomic import Need
from erc.audio import MAX_SECONDS
from erc.cache import build_once
from erc.encoders import AudioArg, TextArg, describe, load_encoder, quiet_loading
from erc.features.extract import (
    DEFAULT_BATCH_SECONDS,
    DEFAULT_TEXT_BATCH,
    ExtractionJob,
    Extractor,
    Vectors,
    extract_here,
)
from erc.features.key import (
    FEATURES_VERSION,
    fingerprint,
    keyed,
)
from erc.features.schema import to_dataset
from erc.layers import open_layers
from erc.vocab import EXCLUDED_FILE, LAYER_MODES, META_FILE, cache_root

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$ERC_CACHE/features`` (``~/.cache/erc-sweeps/features`` by default), as the README says."""
    return cache_root() / "features"


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


@contextlib.contextmanager
def _datasets_quiet(quiet: bool) -> Iterator[None]:
    """datasets' progress bars (loading, saving) off for the block when ``quiet``; its process-wide
    switch is restored afterwards."""
    import datasets

    was = datasets.is_progress_bar_enabled()
    if quiet:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        (datasets.enable_progress_bars if was else datasets.disable_progress_bars)()


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
    # The libraries' own bars redraw with carriage returns: only on a terminal. transformers' switch is
    # taken only where a model loads, so that a current cache is read without importing transformers.
    quiet = not (progress and sys.stderr.isatty())
    with _datasets_quiet(quiet):
        return _build_features(corpus, audio_encoder, text_encoder, cache_dir, max_seconds=max_seconds,
                               batch_seconds=batch_seconds, text_batch_size=text_batch_size, device=device, layers=layers,
                               extractor=extractor or extract_here, progress=progress, quiet=quiet)


def _build_features(corpus: Any, audio_encoder: AudioArg, text_encoder: TextArg, cache_dir: Path, *,
                    max_seconds: float | None, batch_seconds: float, text_batch_size: int,
                    device: str | torch.device | None, layers: str, extractor: Extractor, progress: bool,
                    quiet: bool) -> Any:
    corpus, utterances, digests, classes, dimensions, (audio_encoder, audio_id), (text_encoder, text_id) = keyed(
        corpus, audio_encoder, text_encoder, cache_dir, device, quiet=quiet)
    fp = fingerprint(utterances, digests, audio_id, text_id, max_seconds, layers, classes=classes,
                     dimensions=dimensions)
    built: dict[str, Any] = {}

    def build(tmp: Path, need: Need) -> None:
        with quiet_loading(quiet):
            audio = load_encoder(audio_encoder, "audio", device)
            text = load_encoder(text_encoder, "text", device)
        # Checked before minutes of extraction, not after. Float32 last-layer vectors, labels and
        # transcripts; with layers="all" also the stacks, whose float32 memory-mapped scratch and
        # float16 copy coexist at the end (a memory map on a full disk is a SIGBUS, not an error).
        dims = audio.dim + text.dim
        stacks = audio.dim * audio.n_layers + text.dim * text.n_layers
        need.require(len(utterances) * (4 * dims + (6 * stacks if layers == "all" else 0) + 1024))
        log.info("features: building %s with\n%s", cache_dir / fp, describe([audio, text]))
        job = ExtractionJob(utterances["wav_path"].astype(str).tolist(), utterances["text"].astype(str).tolist(),
                            audio, text, max_seconds=max_seconds, batch_seconds=batch_seconds,
                            text_batch_size=text_batch_size, layers=layers == "all", progress=progress)
        out = Vectors(job, tmp)
        info = extractor(job, out)
        layer_stacks = out.finish()  # raises unless every row arrived
        to_dataset(utterances, out.vectors["audio"], out.vectors["text"],
                   n_classes=len(classes)).save_to_disk(str(tmp))
        if hasattr(corpus, "save_exclusions"):
            corpus.save_exclusions(tmp / EXCLUDED_FILE)
        built.update({
            "fingerprint": fp, "features_version": FEATURES_VERSION, "n_utterances": len(utterances),
            "audio_encoder": {"name": audio.name, "identity": audio_id, "dim": audio.dim, "layers": audio.n_layers},
            "text_encoder": {"name": text.name, "identity": text_id, "dim": text.dim, "layers": text.n_layers},
            "max_seconds": max_seconds, "sample_rate": audio.sample_rate,
            "batch_seconds": batch_seconds, "layers": layers, "layer_stacks": layer_stacks,
            "device": str(audio.device), **info,
            "corpora": sorted(utterances["corpus"].astype(str).unique().tolist()),
            # what the votes and the dimensional columns mean (erc.table.FeatureTable reads them back)
            "classes": list(classes), "dimensions": list(dimensions),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        (tmp / META_FILE).write_text(json.dumps(built, indent=1))  # last: marks the directory complete

    def load(path: Path) -> Any | None:
        return _load_cached(path, utterances) if _is_complete(path) else None

    ds = build_once(cache_dir / fp, build, load=load, what="the feature cache")
    if built:
        log.info("features: %d utterances in %.1f s (audio) + %.1f s (text) on the %s → %s", len(utterances),
                 built["audio_seconds"], built["text_seconds"], built["extracted_on"], cache_dir / fp)
    else:
        log.info("features: reusing %s", cache_dir / fp)
    return ds


def feature_meta(ds_or_path: Any) -> dict:
    """The build record (encoders, settings, timings) stored beside a cached dataset."""
    if isinstance(ds_or_path, (str, Path)):
        path = Path(ds_or_path)
    else:
        path = Path(ds_or_path.cache_files[0]["filename"]).parent
    return json.loads((path / META_FILE).read_text())


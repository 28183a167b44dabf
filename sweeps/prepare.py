"""Everything a sweep needs before its first trial: corpus, encoders, the feature cache."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from erc.atomic import write_atomic
from erc.data import load_corpus
from erc.data.demo import write_demo_corpus
from erc.encoders import build_demo_encoders
from erc.features import Extractor, build_features, feature_meta
from erc.inputs import InputTable, build_inputs, input_meta
from erc.protocol import paper_exclusions
from erc.table import FeatureTable
from erc.vocab import EXCLUDED_FILE, PAPER_AUDIO_ENCODER, PAPER_TEXT_ENCODER
from sweeps.progress import quiet_startup
from sweeps.settings import AUTO, FINETUNE_DEMO_CORPUS, SweepSettings, check_layers

log = logging.getLogger(__name__)


def _extractor(settings: SweepSettings) -> Extractor | None:
    """None (this process) or the cluster's Ray Data job (``--extract-on cluster``)."""
    if settings.extract_on != "cluster":
        return None
    from sweeps.cluster import init_ray
    from sweeps.extract import ClusterExtractor

    init_ray(settings)
    return ClusterExtractor(gpus=extraction_gpus(settings))


def extraction_gpus(settings: SweepSettings) -> bool | None:
    """GPU actors when the sweep asks GPUs of its trials, even before an autoscaler has started one.

    ``auto`` (and 0) leave it to what the cluster has now: GPU actors on a CPU-only cluster would wait forever.
    """
    asked = settings.gpus_per_trial
    return True if asked != AUTO and float(asked) > 0 else None


@dataclass
class Prepared:
    table: FeatureTable | InputTable  # features (cached mode; layer stacks once per node) or inputs (finetune)
    corpus_name: str  # e.g. "KEMDy19+KEMDy20"
    audio_encoder: str
    text_encoder: str
    feature_dir: Path  # the feature cache (cached mode) or the input cache (finetune mode)
    excluded_csv: Path | None
    # segment ids the paper protocol's data selection leaves out (trials with data_selection=paper)
    paper_excluded: np.ndarray = field(default_factory=lambda: np.array([], dtype=str))
    # where finetune trials load the encoders from (a local directory or a hub id)
    audio_source: str = ""
    text_source: str = ""


def prepare(settings: SweepSettings) -> Prepared:
    """Demo corpus + demo encoders when no data is given (built once), then cached features (or, in
    finetune mode, the input cache)."""
    quiet_startup(settings.verbose)  # before any model loads and before Ray starts
    cache = settings.cache_dir
    if settings.data is None:
        # finetune mode's demo is a smaller corpus (with its own demo tokenizer and encoders)
        small = settings.finetune_demo
        demo = cache / "demo" / "finetune" if small else cache / "demo"
        root = write_demo_corpus(demo / "data", seed=0, **(FINETUNE_DEMO_CORPUS if small else {}))
        corpus = load_corpus(root)
        audio_dir, text_dir = build_demo_encoders(demo / "encoders", corpus, seed=0)
        audio, text = str(settings.audio_encoder or audio_dir), str(settings.text_encoder or text_dir)
    else:
        corpus = load_corpus(settings.data)
        audio, text = settings.audio_encoder or PAPER_AUDIO_ENCODER, settings.text_encoder or PAPER_TEXT_ENCODER
    print(corpus.summary())
    paper = paper_exclusions(corpus)
    if settings.mode == "finetune":
        return _prepare_inputs(settings, corpus, audio, text, paper)
    check_layers(settings.layers, settings.base_config(), settings.arm_hparams)
    ds = build_features(corpus, audio, text, cache / "features", layers=settings.layers,
                        extractor=_extractor(settings))
    feature_dir = Path(ds.cache_files[0]["filename"]).parent
    excluded = feature_dir / EXCLUDED_FILE
    if not excluded.exists():  # a cache built elsewhere: keep this run's exclusions beside the sweep
        excluded = corpus.save_exclusions(cache / EXCLUDED_FILE)
    if uses_paper_selection(settings):
        excluded = _with_paper_exclusions(excluded, paper, cache)
    meta = feature_meta(feature_dir)
    return Prepared(
        table=FeatureTable.from_dataset(ds),
        corpus_name="+".join(sorted(corpus.utterances["corpus"].unique())),
        audio_encoder=meta["audio_encoder"]["name"],
        text_encoder=meta["text_encoder"]["name"],
        feature_dir=feature_dir,
        excluded_csv=excluded,
        paper_excluded=paper["segment_id"].to_numpy(dtype=str),
        audio_source=audio,
        text_source=text,
    )


def _prepare_inputs(settings: SweepSettings, corpus: Any, audio: str, text: str, paper: pd.DataFrame) -> Prepared:
    table, path = build_inputs(corpus, audio, text, settings.cache_dir / "inputs")
    excluded = path / EXCLUDED_FILE
    if not excluded.exists():
        excluded = corpus.save_exclusions(settings.cache_dir / EXCLUDED_FILE)
    if uses_paper_selection(settings):
        excluded = _with_paper_exclusions(excluded, paper, settings.cache_dir)
    meta = input_meta(path)
    print(f"inputs: {len(table)} utterances, {table.nbytes / 2**20:.1f} MiB ({meta['wave_dtype']} waveforms at "
          f"{meta['sample_rate']} Hz, cut at {meta['max_seconds']} s) → {path}")
    return Prepared(table=table, corpus_name="+".join(sorted(corpus.utterances["corpus"].unique())),
                    audio_encoder=meta["audio_encoder"]["name"], text_encoder=meta["text_encoder"]["name"],
                    feature_dir=path, excluded_csv=excluded, paper_excluded=paper["segment_id"].to_numpy(dtype=str),
                    audio_source=audio, text_source=text)


def uses_paper_selection(settings: SweepSettings) -> bool:
    """Whether any trial of the sweep trains with the paper protocol's data selection."""
    values = [settings.base_config(), *settings.arm_hparams.values()]
    return any(v.get("data_selection") == "paper" for v in values)


def _with_paper_exclusions(reader_csv: Path, paper: pd.DataFrame, cache: Path) -> Path:
    """The reader's exclusions plus the paper protocol's, in one table (logged to the parent run)."""
    table = pd.concat([pd.read_csv(reader_csv), paper], ignore_index=True)
    kinds = paper["reason"].str.split(": ", n=1).str[1].str.split(" in column").str[0]
    print(f"paper protocol: {len(paper)} more utterances left out of its trials")
    for kind, n in kinds.value_counts().items():
        print(f"  {n:6d}  {kind}")
    text = table.to_csv(index=False)
    out = cache / "exclusions" / f"paper-protocol-{hashlib.sha1(text.encode()).hexdigest()[:10]}.csv"
    return write_atomic(out, text)  # shared by sweeps that start together

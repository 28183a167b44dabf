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
from erc.features import Extractor, build_features, build_sequences, feature_meta
from erc.heads import get as head_class
from erc.inputs import InputTable, build_inputs, input_meta
from erc.protocol import paper_exclusions
from erc.table import FeatureTable
from erc.vocab import EXCLUDED_FILE, NO_FOLD, PAPER_AUDIO_ENCODER, PAPER_TEXT_ENCODER, PARTITIONS
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
    # rater agreement per corpus (erc.data.agreement): one row per corpus, logged to the parent run
    agreement: pd.DataFrame | None = None
    # what a user of the corpora must know (a corpus spec's note, e.g. CREMA-D's text carries no emotion)
    notes: list[str] = field(default_factory=list)


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
        corpora = [settings.train_corpus, settings.test_corpus] if settings.cross_corpus else settings.corpora
        corpus = load_corpus(settings.data, corpora=corpora, classes=settings.classes)
        audio, text = settings.audio_encoder or PAPER_AUDIO_ENCODER, settings.text_encoder or PAPER_TEXT_ENCODER
    print(corpus.summary())
    trials_split(settings, corpus)
    agreement, notes = corpus_facts(corpus)
    paper = paper_exclusions(corpus)
    if settings.mode == "finetune":
        return _other_corpora(settings, _prepare_inputs(settings, corpus, audio, text, paper), agreement, notes)
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
    table = FeatureTable.from_dataset(ds)
    if reads_sequences(settings):  # the xattn head: the last layer's token sequences, built once
        sequences, where = build_sequences(corpus, audio, text, cache / "sequences")
        print(f"sequences: {sum(s.values.nbytes for s in sequences.values()) / 2**20:.1f} MiB "
              f"(float16, memory-mapped) → {where}")
        table = table.with_sequences(sequences)
    return _other_corpora(settings, Prepared(
        table=table,
        corpus_name="+".join(sorted(corpus.utterances["corpus"].unique())),
        audio_encoder=meta["audio_encoder"]["name"],
        text_encoder=meta["text_encoder"]["name"],
        feature_dir=feature_dir,
        excluded_csv=excluded,
        paper_excluded=paper["segment_id"].to_numpy(dtype=str),
        audio_source=audio,
        text_source=text,
    ), agreement, notes)


def reads_sequences(settings: SweepSettings) -> bool:
    """Whether any fusion of the sweep reads token sequences (a cached sweep then builds the sequence cache)."""
    return any(head_class(fusion).reads_sequences for fusion in settings.fusions)


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


# --------------------------------------------------------------------------- other corpora (issue 24)


def trials_split(settings: SweepSettings, corpus: Any) -> None:
    """Session/actor folds, or one trial per (arm, seed) (``NO_FOLD``) for an official partition or a
    cross-corpus run; a mix of the two kinds is an error."""
    kinds = set(corpus.splits.values())
    if settings.cross_corpus:
        names = {n.lower() for n in corpus.splits}
        for flag, wanted in (("--train-corpus", settings.train_corpus), ("--test-corpus", settings.test_corpus)):
            if not any(wanted in (n, resolve_name(n)) for n in names):
                raise ValueError(f"{flag} {wanted}: no such corpus under {settings.data or 'the demo'} "
                                 f"(found {sorted(corpus.splits)})")
        settings.use_no_fold()
        print(f"cross-corpus: train on all of {settings.train_corpus}, evaluate on all of {settings.test_corpus}; "
              "one trial per arm and seed (pair on seeds: --repeats)")
    elif "official" in kinds:
        if len(kinds) > 1:
            raise ValueError(f"corpora with an official partition and corpora with folds cannot share a grid "
                             f"({corpus.splits}); choose with --corpora")
        settings.use_no_fold()
        print("official partition: train on its train part, evaluate on its test part; one trial per arm and "
              "seed (pair on seeds: --repeats)")


def resolve_name(name: str) -> str:
    """A corpus's module name (what --train-corpus and --corpora accept) from its ``corpus`` column value."""
    from erc.data.registry import resolve

    try:
        return resolve(name).read.__module__.rsplit(".", 1)[-1]
    except ValueError:  # the manifest
        return name.lower()


def _other_corpora(settings: SweepSettings, prepared: Prepared, agreement: pd.DataFrame | None,
                   notes: list[str]) -> Prepared:
    prepared.table = cross_corpus_table(settings, prepared.table)
    prepared.agreement, prepared.notes = agreement, notes
    # the trials' run config names the head's output layout (MLflow params); KEMDy's is the default,
    # so a KEMDy sweep's settings (and name) stay what they were
    layout = {"n_classes": len(prepared.table.classes), "n_dimensions": len(prepared.table.dimensions)}
    from erc.config import defaults

    if any(defaults()[k] != v for k, v in layout.items()):
        settings.hparams = {**settings.hparams, **layout}
    if settings.cross_corpus:
        prepared.corpus_name = f"{settings.train_corpus} -> {settings.test_corpus}"
    return prepared


def cross_corpus_table(settings: SweepSettings, table: Any) -> Any:
    """For a cross-corpus run, the table with its partition set: all of the training corpus ``train``,
    all of the test corpus ``test`` (the feature cache stays the one of both corpora read together)."""
    if not settings.cross_corpus:
        return table
    import dataclasses

    def of(wanted: str) -> np.ndarray:
        return np.array([wanted in (c.lower(), resolve_name(c)) for c in table.corpus])

    train, _, test = PARTITIONS
    partition = np.where(of(settings.train_corpus), train, np.where(of(settings.test_corpus), test, ""))
    return dataclasses.replace(table, partition=partition, fold=np.full(len(table), NO_FOLD))


def corpus_facts(corpus: Any) -> tuple[pd.DataFrame | None, list[str]]:
    """Rater agreement per corpus (None when it cannot be computed) and the corpora's notes."""
    from erc.data.agreement import agreement
    from erc.data.registry import resolve

    notes = []
    for name in sorted(corpus.splits):
        try:
            note = resolve(name).note
        except ValueError:  # the manifest has no spec
            note = ""
        if note:
            notes.append(note)
            print(f"note: {note}")
    try:
        table = agreement(corpus)
    except (ValueError, ImportError) as err:  # agreement is a description: a sweep never fails for it
        log.warning("rater agreement not computed: %s", err)
        return None, notes
    return table, notes


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

"""Everything a sweep needs before its first trial: corpus, encoders, the feature cache."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from erc.data import load_corpus
from erc.data.demo import write_demo_corpus
from erc.encoders import build_demo_encoders
from erc.features import Extractor, build_features, feature_meta
from erc.table import FeatureTable
from sweeps.settings import PAPER_AUDIO, PAPER_TEXT, SweepSettings, check_layers

log = logging.getLogger(__name__)


def _extractor(settings: SweepSettings) -> Extractor | None:
    """None (this process) or the cluster's Ray Data job (``--extract-on cluster``)."""
    if settings.extract_on != "cluster":
        return None
    from sweeps.extract import ClusterExtractor
    from sweeps.runner import init_ray  # the runner imports this module

    init_ray(settings)
    # GPU actors when the sweep asks GPUs of its trials, even before an autoscaler has started one
    return ClusterExtractor(gpus=True if settings.gpus_per_trial else None)


@dataclass
class Prepared:
    table: FeatureTable  # the features, as they go into Ray's object store (layer stacks: once per node)
    corpus_name: str  # e.g. "KEMDy19+KEMDy20"
    audio_encoder: str
    text_encoder: str
    feature_dir: Path
    excluded_csv: Path | None


def prepare(settings: SweepSettings) -> Prepared:
    """Demo corpus + demo encoders when no data is given (built once), then cached features."""
    cache = settings.cache_dir
    if settings.data is None:
        root = write_demo_corpus(cache / "demo" / "data", seed=0)
        corpus = load_corpus(root)
        audio_dir, text_dir = build_demo_encoders(cache / "demo" / "encoders", corpus, seed=0)
        audio, text = str(settings.audio_encoder or audio_dir), str(settings.text_encoder or text_dir)
    else:
        corpus = load_corpus(settings.data)
        audio, text = settings.audio_encoder or PAPER_AUDIO, settings.text_encoder or PAPER_TEXT
    print(corpus.summary())
    check_layers(settings.layers, settings.base_config(), settings.arm_hparams)
    ds = build_features(corpus, audio, text, cache / "features", layers=settings.layers,
                        extractor=_extractor(settings))
    feature_dir = Path(ds.cache_files[0]["filename"]).parent
    excluded = feature_dir / "excluded.csv"
    if not excluded.exists():  # a cache built elsewhere: keep this run's exclusions beside the sweep
        excluded = corpus.save_exclusions(cache / "excluded.csv")
    meta = feature_meta(feature_dir)
    return Prepared(
        table=FeatureTable.from_dataset(ds),
        corpus_name="+".join(sorted(corpus.utterances["corpus"].unique())),
        audio_encoder=meta["audio_encoder"]["name"],
        text_encoder=meta["text_encoder"]["name"],
        feature_dir=feature_dir,
        excluded_csv=excluded,
    )

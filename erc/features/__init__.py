"""The feature cache: each frozen encoder runs once per utterance, every trial reuses it (DESIGN §4).

One job per module:

* :mod:`erc.features.key` — the utterance table a cache is built from, WAV content digests, the fingerprint;
* :mod:`erc.features.extract` — the ``ExtractionJob`` any ``Extractor`` runs, the ``Vectors`` it fills,
  this process's extractor ``extract_here``;
* :mod:`erc.features.schema` — the rows as an Arrow dataset;
* :mod:`erc.features.cache` — ``build_features`` (key, lock, build, atomic publish, reuse) and ``feature_meta``;
* :mod:`erc.features.sequences` — ``build_sequences``: the last layer's token sequences (the ``xattn`` head's);
* ``python -m erc.features`` (:mod:`erc.features.__main__`) — the command line.
"""

from erc.features.cache import build_features, default_cache_dir, feature_meta
from erc.features.extract import (
    DEFAULT_BATCH_SECONDS,
    DEFAULT_TEXT_BATCH,
    ExtractionJob,
    Extractor,
    Vectors,
    extract_here,
    length_buckets,
)
from erc.features.key import FEATURES_VERSION, LABEL_COLUMNS, REQUIRED_COLUMNS, fingerprint
from erc.features.sequences import build_sequences
from erc.vocab import LAYER_MODES  # re-exported: the sweep layer imports it from here

__all__ = [
    "DEFAULT_BATCH_SECONDS",
    "DEFAULT_TEXT_BATCH",
    "FEATURES_VERSION",
    "LABEL_COLUMNS",
    "LAYER_MODES",
    "REQUIRED_COLUMNS",
    "ExtractionJob",
    "Extractor",
    "Vectors",
    "build_features",
    "build_sequences",
    "default_cache_dir",
    "extract_here",
    "feature_meta",
    "fingerprint",
    "length_buckets",
]

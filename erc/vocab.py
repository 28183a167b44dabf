"""The names every layer shares, once: class sets, fusions, label arms, metrics and their directions,
modes, presets, layer modes, folds, encoder ids and the cache's file names.

Imports nothing heavy (only the standard library), so entry points can build their argument parsers
from it before torch, ray or mlflow load. ``erc``, ``sweeps`` and ``analysis`` import these names;
none of them retypes one.
"""

from __future__ import annotations

import os
import pkgutil
from pathlib import Path

# --------------------------------------------------------------------------- classes and targets
# KEMDy's emotion classes, in the index order of the vote vectors (DESIGN §2)
EMOTIONS: tuple[str, ...] = ("surprise", "fear", "angry", "neutral", "happy", "sad", "disgust")
# class sets by name; a corpus declares its default (erc/data/)
CLASS_SETS: dict[str, tuple[str, ...]] = {"kemdy": EMOTIONS}
N_CLASSES = len(EMOTIONS)
# the dimensional targets a head predicts after the class logits, in output order
DIMENSIONS: tuple[str, ...] = ("valence", "arousal")
N_DIMENSIONS = len(DIMENSIONS)


def n_outputs(n_classes: int = N_CLASSES, n_dimensions: int = N_DIMENSIONS) -> int:
    """A head's output size: one logit per class, then one value per dimension."""
    return n_classes + n_dimensions


N_OUTPUTS = n_outputs()

# --------------------------------------------------------------------------- factors
LABEL_ARMS: tuple[str, ...] = ("hard", "soft", "peakl")
# the paper's two fusions, the default grid's factor values in the paper's order
DEFAULT_FUSIONS: tuple[str, ...] = ("concat", "outer")
_HEADS_DIR = Path(__file__).with_name("heads")


def fusion_names() -> tuple[str, ...]:
    """Every registered fusion: the modules of ``erc/heads/`` (one per fusion, named by it).

    Found by listing the package's modules, not importing them (that would import torch), so
    ``--fusions`` can list its choices at once. The paper's fusions come first, then the rest by name.
    """
    found = {m.name for m in pkgutil.iter_modules([str(_HEADS_DIR)]) if not m.name.startswith("_")}
    found |= set(DEFAULT_FUSIONS) if not found else set()  # before the heads package exists
    return (*[f for f in DEFAULT_FUSIONS if f in found], *sorted(found - set(DEFAULT_FUSIONS)))


# the order factor values are shown in (tables, plots): the defaults' order, the rest after them
FACTOR_ORDER: dict[str, tuple[str, ...]] = {"fusion": DEFAULT_FUSIONS, "labels": LABEL_ARMS}

# --------------------------------------------------------------------------- metrics
CLASSIFICATION_METRICS: tuple[str, ...] = ("acc", "macro_f1", "micro_f1", "auroc")
REGRESSION_METRICS: tuple[str, ...] = ("ccc_valence", "ccc_arousal")
METRIC_KEYS: tuple[str, ...] = (*CLASSIFICATION_METRICS, *REGRESSION_METRICS)
LOSS_KEYS: tuple[str, ...] = ("loss", "cls_loss", "reg_loss", "train_loss")
# metrics where lower is better (the selection mode)
MINIMISE = frozenset(LOSS_KEYS)
DEFAULT_SELECT_METRIC = "acc"  # the paper checkpoints on validation accuracy


def check_metric(name: str) -> str:
    """``name`` if it is a known metric or loss, else a ValueError listing them."""
    if name not in (*METRIC_KEYS, *LOSS_KEYS):
        raise ValueError(f"unknown metric {name!r}; choose from {[*METRIC_KEYS, *LOSS_KEYS]}")
    return name


def metric_mode(name: str) -> str:
    """``"min"`` for losses, ``"max"`` for every other metric."""
    return "min" if check_metric(name) in MINIMISE else "max"


# --------------------------------------------------------------------------- runs
MODES: tuple[str, ...] = ("cached", "finetune")
PROTOCOL_NAMES: tuple[str, ...] = ("default", "paper")
PRESET_NAMES: tuple[str, ...] = ("demo", "paper")
LAYER_MODES: tuple[str, ...] = ("last", "all")  # what a feature cache holds: the last layer, or every layer too
MODALITIES: tuple[str, ...] = ("audio", "text")
N_FOLDS = 5  # the paper's 5 session folds
# the corpora found by release folder: the modules of erc/data/ that declare them (erc.data.registry)
CORPUS_NAMES: tuple[str, ...] = ("kemdy19", "kemdy20", "iemocap", "msp_podcast", "crema_d")
MANIFEST = "manifest"  # a ratings manifest (.csv / .jsonl), read by file rather than by folder
MANIFEST_SUFFIXES: tuple[str, ...] = (".csv", ".jsonl")
# how trials split a corpus: session folds, actor folds, or the release's official partition
SPLIT_KINDS: tuple[str, ...] = ("session", "actor", "official")
PARTITIONS: tuple[str, ...] = ("train", "dev", "test")  # an official partition's parts (`split` column)
# the fold of a trial that is not one of a cross-validation's folds: a corpus's official partition
# (train on `train`, report `test`) or a cross-corpus trial; such trials are paired on seed (--repeats)
NO_FOLD = -1
FOLDS: tuple[int, ...] = tuple(range(N_FOLDS))
# where a run chooses its epoch and stops early (DESIGN §14): a dev split carved from its training
# sessions, or the held-out fold itself (the paper's way; the reported numbers are then optimistic)
SELECT_ON: tuple[str, ...] = ("dev", "valid")
DEFAULT_SELECT_ON = "dev"

# --------------------------------------------------------------------------- encoders
PAPER_AUDIO_ENCODER = "kresnik/wav2vec2-large-xlsr-korean"
PAPER_TEXT_ENCODER = "klue/roberta-large"

# --------------------------------------------------------------------------- places and files
EXPERIMENT = "erc-sweeps"  # the default MLflow experiment
CACHE_ENV = "ERC_CACHE"
DEFAULT_CACHE_ROOT = "~/.cache/erc-sweeps"
META_FILE = "meta.json"  # a built cache directory's description
EXCLUDED_FILE = "excluded.csv"  # the utterances a reader left out, with reasons
REPORTS_DIR = "reports"  # reports/<sweep>/ under the working directory


def cache_root() -> Path:
    """Where caches live: ``$ERC_CACHE``, else ``~/.cache/erc-sweeps``."""
    return Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE_ROOT)).expanduser()

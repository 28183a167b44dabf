"""The MLflow naming contract between the sweep layer (writes runs) and analysis (reads them).

Every tag name, role, stage, metric prefix, param name and artifact path that both sides use is
spelled here once; ``sweeps/`` and ``analysis/`` import it, nothing retypes the strings. It lives in
``erc`` (names only: it imports no mlflow) because both the writer and the reader stand on ``erc``.

Layout a sweep writes (DESIGN §7)::

    parent run   tags: sweep, role=parent, stage, corpus, encoders, git_commit, command
    └── trial    tags: role=trial, stage=grid|search, fold, fusion, labels, arm, seed, ray.trial_id, attempts
                 params: the resolved config, n_train, n_valid
                 metrics: valid/<m>, dev/<m> and train/loss per epoch (step = epoch), selected/<m>,
                          oracle/<m>, best/<m>, robust/<condition>/<m>
                 artifacts: split.json, checkpoint/, plots/, errors/

What analysis *needs* of a run is much less (see :data:`MINIMAL_RUN`): a fold and the compared
factors, as tags or params, and ``selected/<metric>`` (or plain ``<metric>``) values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from erc import vocab
from erc.vocab import MODALITIES

# --------------------------------------------------------------------------- tags
SWEEP = "sweep"
ROLE = "role"
STAGE = "stage"
FOLD = "fold"
FUSION = "fusion"
LABELS = "labels"
ARM = "arm"
SEED = "seed"
CORPUS = "corpus"
AUDIO_ENCODER = "audio_encoder"
TEXT_ENCODER = "text_encoder"
FEATURES = "features"
GIT_COMMIT = "git_commit"
COMMAND = "command"
MODE = "mode"  # cached | finetune (erc.protocol.MODES)
PROTOCOL = "protocol"  # default | paper (erc.protocol.PROTOCOLS)
GPUS_PER_TRIAL = "gpus_per_trial"  # parent run: the GPU share per trial a sweep used (auto: measured)
GPUS_PER_TRIAL_WHY = GPUS_PER_TRIAL + ".why"  # parent run: what the choice rests on
TRIAL_ID = "ray.trial_id"
NODE_ID = "ray.node_id"
NODE_IP = "ray.node_ip"
ATTEMPTS = "attempts"
FAILED_ATTEMPTS = "failed_attempts"
LAST_ERROR = "last_error"
RESUMED = "resumed"
ORPHANED = "orphaned"
PARENT_RUN_ID = "mlflow.parentRunId"

# roles: what a run is in the sweep's tree
PARENT_ROLE = "parent"  # one per sweep
TRIAL_ROLE = "trial"  # one per Tune trial
SEARCH_ROLE = "search"  # one per (arm, fold) nuisance search under a grid parent (--tune-per-arm)
ANALYSIS_ROLE = "analysis"  # holds the report of runs that have no parent run to log it to
ANALYSIS_SCOPE = "analysis_scope"  # tag of an analysis run: the selection it reports on

# stages: which experiment a trial belongs to; only grid trials enter the paper's tables
GRID_STAGE = "grid"
SEARCH_STAGE = "search"

# the scientific factors of the ablation, in the paper's order of their values
FACTORS = (FUSION, LABELS)
FACTOR_ORDER = {FUSION: vocab.FACTOR_ORDER["fusion"], LABELS: vocab.FACTOR_ORDER["labels"]}

# --------------------------------------------------------------------------- params
N_TRAIN = "n_train"  # utterances the head was trained on (after the hard arm drops ties)
N_VALID = "n_valid"  # validation utterances evaluated
N_DEV = "n_dev"  # dev utterances the epoch was chosen on (0: chosen on the held-out fold, select_on='valid')

# --------------------------------------------------------------------------- metrics
VALID_PREFIX = "valid/"  # per epoch, step = epoch: the held-out fold (the one the tables report)
DEV_PREFIX = "dev/"  # per epoch: the dev split carved from the training sessions (select_on='dev')
TRAIN_PREFIX = "train/"  # per epoch
# every metric on the held-out fold at the one epoch select_metric picks on the selection set
# (select_on: the dev split by default; the held-out fold itself under --protocol paper)
SELECTED_PREFIX = "selected/"
ORACLE_PREFIX = "oracle/"  # every metric on the held-out fold at the epoch select_metric picks on it (optimistic)
BEST_PREFIX = "best/"  # each metric's own best epoch on the held-out fold (the paper's way; optimistic)
# after training, the held-out fold with the selected weights and one modality perturbed:
# robust/<condition>/<metric>, conditions from erc.robustness.condition_names (missing_audio,
# noise_text_0.5, ...)
ROBUST_PREFIX = "robust/"
GPU_PREFIX = "gpu/"
SEARCH_PREFIX = "search/"
EMBED_PREFIX = "embed/"  # alignment numbers of the embedding figure (analysis.embeddings)
# per epoch, a head mixing encoder layers (audio_layer/text_layer = "weighted"): the softmax weight of
# each layer, layer_weight/<audio|text>_<layer index>
LAYER_WEIGHT_PREFIX = "layer_weight/"
# parent run: rater agreement per corpus, ``agreement/<corpus>/<statistic>`` (erc.data.agreement's columns)
AGREEMENT_PREFIX = "agreement/"
GPU_PEAK_MEMORY = GPU_PREFIX + "peak_memory_mb"  # a trial's peak CUDA memory
# parent run (--gpus-per-trial auto): the probe's measurement and the packing it chose
GPU_PROBE_PEAK_MEMORY = GPU_PREFIX + "probe_peak_memory_mb"
GPU_TOTAL_MEMORY = GPU_PREFIX + "total_memory_mb"
GPU_TRIALS_PER_GPU = GPU_PREFIX + "trials_per_gpu"
# once per trial, the head's size (erc.heads.model_size): trainable parameters, forward FLOPs per utterance
MODEL_PREFIX = "model/"
MODEL_PARAMS = f"{MODEL_PREFIX}params"
MODEL_FLOPS = f"{MODEL_PREFIX}flops"
SIZE_METRICS = (MODEL_PARAMS, MODEL_FLOPS)
LOGGED_PREFIXES = (VALID_PREFIX, DEV_PREFIX, TRAIN_PREFIX, SELECTED_PREFIX, ORACLE_PREFIX, BEST_PREFIX,
                   ROBUST_PREFIX, GPU_PREFIX, LAYER_WEIGHT_PREFIX, MODEL_PREFIX)
# Keys under these are never a run's plain "<metric>" (the reader's fallback for runs logged elsewhere).
KNOWN_PREFIXES = (*LOGGED_PREFIXES, SEARCH_PREFIX, EMBED_PREFIX)
VALUE_PREFIXES = {"selected": SELECTED_PREFIX, "oracle": ORACLE_PREFIX, "best": BEST_PREFIX}
DEFAULT_VALUES = "selected"

# --------------------------------------------------------------------------- robustness conditions
# robust/<condition>/<metric> (erc.robustness evaluates them, analysis.robustness reads them back)
NOISE_LEVELS: tuple[float, ...] = (0.5, 1.0, 2.0)  # σ as multiples of the per-feature training std
MISSING, NOISE = "missing", "noise"


def level_name(sigma: float) -> str:
    """How a noise level is spelled in a condition name: 0.5 → ``0.5``, 1.0 → ``1``."""
    return f"{sigma:g}"


def condition_name(kind: str, modality: str, sigma: float | None = None) -> str:
    """``missing_audio``, ``noise_text_0.5``."""
    if kind == MISSING:
        return f"{MISSING}_{modality}"
    if kind == NOISE and sigma is not None:
        return f"{NOISE}_{modality}_{level_name(sigma)}"
    raise ValueError(f"no condition {kind!r} (sigma {sigma!r})")


def condition_names(levels: Sequence[float] = NOISE_LEVELS,
                    modalities: Sequence[str] = MODALITIES) -> list[str]:
    """Every condition of :func:`erc.robustness.robustness`, in the order it evaluates them."""
    return ([condition_name(MISSING, m) for m in modalities]
            + [condition_name(NOISE, m, s) for m in modalities for s in levels])


@dataclass(frozen=True)
class Condition:
    """One robustness condition: a modality missing, or noisy at level σ."""

    kind: str  # MISSING or NOISE
    modality: str  # audio or text
    sigma: float | None  # NOISE only

    @property
    def name(self) -> str:
        return condition_name(self.kind, self.modality, self.sigma)


def parse_condition(name: str) -> Condition:
    """The inverse of :func:`condition_name` (what the report reads back from ``robust/<name>/<m>``)."""
    kind, _, rest = name.partition("_")
    if kind == MISSING and rest in MODALITIES:
        return Condition(MISSING, rest, None)
    modality, _, level = rest.partition("_")
    if kind == NOISE and modality in MODALITIES:
        try:
            return Condition(NOISE, modality, float(level))
        except ValueError:
            pass
    raise ValueError(f"not a robustness condition: {name!r}")


# --------------------------------------------------------------------------- Tune result keys
# what a trial reports to Tune beside its metrics (sweeps/trainable.py writes, the callback reads)
RESULT_EPOCH = "epoch"
RESULT_SCORE = "score"  # the running best of a search's tuned metric, in its direction
RESULT_NODE_ID = "node_id"
RESULT_NODE_IP = "node_ip"
# epochs a grid trial batched into this result (a list of epoch results, each with its own RESULT_EPOCH):
# the callback logs each at its own step, before the result's own metrics
RESULT_EARLIER_EPOCHS = "earlier_epochs"

# --------------------------------------------------------------------------- artifacts
CHECKPOINT_DIR = "checkpoint"
HEAD_CHECKPOINT = f"{CHECKPOINT_DIR}/head.pt"  # cached mode: {"config", "state_dict"} of the head
MODEL_CHECKPOINT = f"{CHECKPOINT_DIR}/model.pt"  # finetune mode: encoders (audio_encoder./text_encoder.) + head
PLOTS_DIR = "plots"
ERRORS_DIR = "errors"
DATA_DIR = "data"
REPORT_DIR = "report"
COMPARE_DIR = "compare"
BEST_CONFIG_DIR = "best"
PER_ARM_DIR = "per_arm_tuning"
EMBEDDINGS_DIR = "embeddings"  # a trial's embedding coordinates and settings
LAYER_WEIGHTS_FILE = "layer_weights.json"  # a weighted head's layer weights at the selected epoch (+ plots/*.png)
# what else a sweep writes (sweeps/ only; nothing reads these by name but people and the tests):
# a grid trial's checkpoint directory, logged as its artifacts (*.png under plots/, *.pt under checkpoint/)
FINAL_FILE = "final.json"  # the finished trial's last result (a restored trial reports it again)
STATE_FILE = "state.pt"  # a running trial's resume state (every-epoch checkpoints; never logged)
PREDICTIONS_FILE = "predictions.jsonl"
HISTORY_FILE = "history.json"
DEV_HISTORY_FILE = "dev_history.json"  # the dev split's metrics per epoch (select_on='dev')
CONFUSION_PLOT = "confusion_matrix.png"
LAYER_WEIGHTS_PLOT = "layer_weights.png"
# beside a cleanly finished sweep's local report: what its rerun may print without MLflow (sweeps.finished)
FINISHED_MARKER = "finished.json"
AGREEMENT_FILE = "agreement.csv"  # parent run, data/: the rater agreement table (one row per corpus)
CORPUS_NOTES = "corpus_notes"  # parent run tag: what a user of the corpora must know (erc.data registry notes)
PEAKL_PLOT = "peakl_labels.png"  # parent run, plots/: the corpus's labels before and after PeakL
# at a grid trial's artifact root: {"train": [...], "dev": [...], "test": [...]} segment ids (DESIGN §14);
# a --tune-per-arm search run's: {"train": [...], "valid": [...]} of its inner split
SPLIT_FILE = "split.json"
# a --tune-per-arm search run's artifacts, and the grid parent's summary under PER_ARM_DIR
SEARCH_TRIALS_FILE = "trials.csv"
SEARCH_BEST_FILE = "best_config.yaml"
PER_ARM_CONFIGS_FILE = "per_arm_configs.yaml"
PER_ARM_GAIN_FILE = "per_arm_gain.csv"
ISOLATION_PLOT = "isolation_plot.png"

MINIMAL_RUN = (
    "a FINISHED run with the fold (tag or param 'fold', an integer), each compared factor (tag or param, "
    "e.g. 'fusion', 'labels' or any name of yours) and the metric (as 'selected/<metric>' or plain "
    "'<metric>'; 'best/<metric>' for --values best)"
)
# What the reader uses when a run has it, and what it assumes otherwise.
OPTIONAL_RUN = (
    "'seed' (repeats are paired on (fold, seed)); 'n_train'/'n_valid' (fold sizes for the Nadeau-Bengio "
    "correction; equal folds are assumed without them); a parent run (--sweep); 'role'/'stage' tags (runs "
    "whose role is not 'trial' or whose stage is not 'grid' are left out)"
)


def agreement_metric(corpus: str, statistic: str) -> str:
    """A parent run's rater agreement value: ``agreement/KEMDy19/alpha_categories``."""
    return f"{AGREEMENT_PREFIX}{corpus}/{statistic}"


def arm_name(fusion: str, labels: str) -> str:
    """An arm is one value of every scientific factor: ``outer-peakl``."""
    return f"{fusion}-{labels}"


def search_best(metric: str) -> str:
    """A finished (arm, fold) search run's best score of ``metric``: ``search/best_acc``."""
    return f"{SEARCH_PREFIX}best_{metric}"


def search_default(metric: str) -> str:
    """The same search's score of the untuned default configuration: ``search/default_acc``."""
    return f"{SEARCH_PREFIX}default_{metric}"


def error_artifact(attempt: int) -> str:
    return f"{ERRORS_DIR}/attempt_{attempt}.txt"


def node_attempt_tag(attempt: int) -> str:
    """Where attempt ``n`` (> 1) of a retried trial ran: ``ray.node_id.attempt_2``."""
    return f"{NODE_ID}.attempt_{attempt}"


def quote(value: object) -> str:
    """A string literal in MLflow's filter grammar (single or double quotes, no escapes)."""
    text = str(value)
    if "'" in text and '"' in text:
        raise ValueError(f"MLflow filters cannot hold a value with both quote characters: {text!r}")
    return f'"{text}"' if "'" in text else f"'{text}'"


def tag_filter(tags: Mapping[str, object] | None = None, *, parent: str | None = None,
               status: str | None = None, extra: Iterable[str] = ()) -> str:
    """``tags.`k` = 'v' and …`` for search_runs: every value quoted, keys backquoted (they hold dots)."""
    clauses = [f"tags.`{key}` = {quote(value)}" for key, value in (tags or {}).items()]
    if parent is not None:
        clauses.append(f"tags.`{PARENT_RUN_ID}` = {quote(parent)}")
    if status is not None:
        clauses.append(f"attributes.status = {quote(status)}")
    clauses.extend(extra)
    return " and ".join(clauses)


def search_all(client: Any, experiment_ids: str | Sequence[str], filter_string: str = "",
               order_by: list[str] | None = None) -> list[Any]:
    """Every active run matching ``filter_string`` (MLflow's grammar), page by page.

    ``client`` is an ``mlflow.tracking.MlflowClient`` (this module imports no mlflow); its
    ``search_runs`` returns active runs only by default.
    """
    ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(ids, filter_string=filter_string, max_results=1000, order_by=order_by,
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs

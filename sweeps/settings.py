"""Sweep settings: one dataclass, the only schema of a sweep's options, passed down explicitly.

Each field of :class:`SweepSettings` declares its command-line flag beside its default, in the field's
metadata (as Hydra's structured configs do): the help text, the argparse type or choices, the help
group, which entry scripts take it, and whether it defines the sweep's results (``fingerprint``: the
resume identity). The parser (:func:`add_arguments`), the fingerprint and :func:`settings_from_args`
are derived from the fields, so a new option is one field; both entry scripts get the same names and
the same parsing, and a bad value is an argparse usage error listing the choices.

Imports nothing heavy (no torch, ray or mlflow): the entry scripts build their parsers from it, so
``--help`` and usage errors come at once. What needs the run configuration (``--config`` files) imports
it inside the function.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from erc import vocab
from erc.optim import OptimConfig
from sweeps.fault_injection import FAIL_ONCE_ENV, fail_once_spec

FOLDS = vocab.FOLDS
EXTRACT_ON = ("driver", "cluster")
AUTO = "auto"
ALL = "all"  # --fusions all: every registered fusion
SCRIPTS = ("ablation", "search")  # the entry scripts that take settings flags
QUIET, DEFAULT, VERBOSE = -1, 0, 1  # verbosity: -q, neither, -v
# --smoke-test: the smallest run that still goes through every stage
SMOKE = {"folds": [0], "epochs": 1, "preset": "demo"}
# --mode finetune on the built-in demo: a smaller corpus (80 utterances) and few epochs, so the 30-trial
# grid of fine-tuned demo encoders runs in minutes on a CPU (an epoch of the full demo corpus: ~2 min)
FINETUNE_DEMO = {"epochs": 2, "batch_size": 8}
FINETUNE_DEMO_CORPUS = {"kemdy19_sessions": 5, "kemdy20_sessions": 5, "utterances_per_speaker": 4}

# Help groups, in the order --help shows them (a group only where a script has flags in it).
GROUPS = ("grid", "arms and folds", "data and encoders", "resources and cluster", "tracking", "output")


# --------------------------------------------------------------------------- argparse types

def gpus_argument(text: str) -> float | str:
    """argparse type: ``auto`` or a fraction of a GPU (>= 0)."""
    if text == AUTO:
        return AUTO
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 'auto' or a number >= 0") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    if value > 1 and not value.is_integer():  # Ray's rule: fractions of one GPU, or whole GPUs
        raise argparse.ArgumentTypeError(f"{text}: use a fraction of one GPU (e.g. 0.25) or a whole number")
    return value


def choice_list(choices: Iterable, kind: type = str, *, everything: str | None = None) -> Callable[[str], list]:
    """argparse type for ``a,b,c`` with every item one of ``choices`` (a usage error otherwise).

    ``everything`` (e.g. ``all``) names every choice at once.
    """
    choices = tuple(choices)
    listed = ",".join(map(str, choices)) + (f" (or {everything!r})" if everything else "")

    def parse(text: str) -> list:
        if everything is not None and text.strip() == everything:
            return list(choices)
        try:
            values = [kind(x.strip()) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated list of {listed}") from None
        bad = [v for v in values if v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"{bad or 'empty'} in {text!r}; choose from {listed}")
        return list(dict.fromkeys(values))  # each once, in the order given

    return parse


def positive(kind: type) -> Callable[[str], Any]:
    """argparse type: a ``kind`` > 0."""
    return _bounded(kind, lambda v: v > 0, "> 0")


def non_negative(kind: type) -> Callable[[str], Any]:
    """argparse type: a ``kind`` >= 0."""
    return _bounded(kind, lambda v: v >= 0, ">= 0")


def _bounded(kind: type, ok: Callable[[Any], bool], rule: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return parse


def control_error(fusions: list[str], control: str) -> str | None:
    """Why ``control`` cannot be the report's control fusion (None if it can): with more than two fusions
    (the Friedman section) it must be one of them."""
    if len(fusions) > 2 and control not in fusions:
        return f"--control {control} is not among --fusions {','.join(fusions)}"
    return None


# --------------------------------------------------------------------------- the schema

def flag(help: str, group: str, *, flags: tuple[str, ...] | None = None, scripts: tuple[str, ...] = SCRIPTS,
         fingerprint: bool = False, **argparse_kwargs: Any) -> dict[str, Any]:
    """A settings field's metadata that makes it a flag (``--field-name`` unless ``flags``) of ``scripts``.

    ``argparse_kwargs`` (type, choices, action, metavar) pass to ``add_argument``; ``{default}`` in ``help``
    shows the script's default. ``fingerprint``: see :data:`IDENTITY`.
    """
    assert group in GROUPS, group
    return {"help": help, "group": group, "flags": flags, "scripts": scripts, "argparse": argparse_kwargs,
            "fingerprint": fingerprint}


# The metadata of a field that defines the sweep's results without being a flag: reruns with the same
# values of every such field (``fingerprint``) resume the same sweep.
IDENTITY = {"fingerprint": True}


@dataclass
class SweepSettings:
    # ----------------------------------------------------------- what the sweep computes (its identity)
    folds: list[int] = field(default_factory=lambda: list(FOLDS), metadata=flag(
        "validation folds (default {default})", "arms and folds", fingerprint=True, type=choice_list(FOLDS, int)))
    fusions: list[str] = field(default_factory=lambda: list(vocab.DEFAULT_FUSIONS), metadata=flag(
        f"comma-separated fusion heads: {','.join(vocab.fusion_names())}, or {ALL!r} (default {{default}})",
        "arms and folds", fingerprint=True, type=choice_list(vocab.fusion_names(), everything=ALL)))
    labels: list[str] = field(default_factory=lambda: list(vocab.LABEL_ARMS), metadata=flag(
        f"comma-separated label arms: {','.join(vocab.LABEL_ARMS)} (default {{default}})", "arms and folds",
        fingerprint=True, type=choice_list(vocab.LABEL_ARMS)))
    # the report's control fusion with more than two fusions (analysis.many_arms): not the sweep's identity
    control: str = field(default=vocab.DEFAULT_FUSIONS[0], metadata=flag(
        "with more than two fusions: the control of the report's post-hoc test (Friedman, then Holm against it) "
        "and of its paired tables (default {default})", "arms and folds", scripts=("ablation",),
        choices=vocab.fusion_names()))
    preset: str | None = field(default=None, metadata=flag(  # None: demo on the demo corpus, paper with --data
        "head sizes (default: demo on the demo corpus, paper with --data)", "arms and folds", fingerprint=True,
        choices=vocab.PRESET_NAMES))
    mode: str = field(default=vocab.MODES[0], metadata=flag(
        "cached: train heads on frozen encoders' cached vectors (default); finetune: train both encoders with the "
        "head end to end, as the paper did", "arms and folds", fingerprint=True, choices=vocab.MODES))
    protocol: str = field(default=vocab.PROTOCOL_NAMES[0], metadata=flag(  # a named bundle of run-config values
        "default: DESIGN §3–§5; paper: the original code's recipe (each item an ordinary config key that --config "
        "can override; in cached mode only the items that apply)", "arms and folds", fingerprint=True,
        choices=vocab.PROTOCOL_NAMES))
    epochs: int | None = field(default=None, metadata=flag(  # None: the run config's
        f"epochs per trial (default: the run config's, {OptimConfig.epochs}; --protocol paper: the protocol's)",
        "arms and folds", fingerprint=True, type=positive(int)))
    seed: int = field(default=0, metadata=flag("the trials' seed (default {default})", "arms and folds",
                                               fingerprint=True, type=int))
    repeats: int = field(default=1, metadata=flag(
        "run the grid with this many seeds (seed, seed+1, …)", "grid", scripts=("ablation",), fingerprint=True,
        type=positive(int)))
    tune_per_arm: int = field(default=0, metadata=flag(
        "first tune each arm's nuisance hyper-parameters with N Optuna trials on an inner split of its training "
        "folds, then run the grid with each arm's own best values", "grid", scripts=("ablation",),
        fingerprint=True, type=non_negative(int), metavar="N"))
    data: str | None = field(default=None, metadata=flag(  # None: the embedded demo corpus and encoders
        "root holding KEMDy19/ and/or KEMDy20_v1_1/ (default: the built-in demo)", "data and encoders",
        fingerprint=True))
    audio_encoder: str | None = field(default=None, metadata=flag(
        f"hub id or local dir (default with --data: {vocab.PAPER_AUDIO_ENCODER})", "data and encoders",
        fingerprint=True))
    text_encoder: str | None = field(default=None, metadata=flag(
        f"hub id or local dir (default with --data: {vocab.PAPER_TEXT_ENCODER})", "data and encoders",
        fingerprint=True))
    hparams: dict[str, Any] = field(default_factory=dict, metadata=IDENTITY)  # run-config values for every arm
    arm_hparams: dict[str, dict[str, Any]] = field(default_factory=dict, metadata=IDENTITY)  # "outer-peakl" -> …
    identity: dict[str, Any] = field(default_factory=dict, metadata=IDENTITY)  # what else: a search's space …
    # ----------------------------------------------------------- where and how it runs (the same results)
    cache_dir: Path = field(default_factory=vocab.cache_root, metadata=flag(
        f"demo data, encoders, feature cache, MLflow store, Ray results (default: ${vocab.CACHE_ENV} or "
        f"{vocab.DEFAULT_CACHE_ROOT})", "data and encoders", type=Path))
    layers: str = field(default=vocab.LAYER_MODES[0], metadata=flag(  # what the feature cache holds (erc.layers)
        "feature cache: 'last' = the encoders' last layer (default); 'all' = every hidden layer's vectors too "
        "(float16), which runs with audio_layer/text_layer = an index or 'weighted' read", "data and encoders",
        choices=vocab.LAYER_MODES))
    extract_on: str | None = field(default=None, metadata=flag(  # None: cluster with an address, else driver
        "where missing features are computed: 'cluster' = a Ray Data job over the cluster's workers (GPU actors "
        "when it has GPUs), the default with --address; 'driver' = this process, the default otherwise",
        "data and encoders", choices=EXTRACT_ON))
    cpus_per_trial: float = field(default=1.0, metadata=flag(
        "CPUs per trial (default {default})", "resources and cluster", type=positive(float)))
    gpus_per_trial: float | str = field(default=AUTO, metadata=flag(  # auto: measured by a probe (sweeps/gpus.py)
        "fraction of a GPU per trial, or 'auto' (default): one probe step of the largest configuration on a GPU "
        "node measures its peak memory and packs as many trials per GPU as fit with 20%% headroom; 0 without GPUs",
        "resources and cluster", type=gpus_argument))
    max_concurrent: int | None = field(default=None, metadata=flag(
        "cap on trials running at once", "resources and cluster", type=positive(int)))
    address: str | None = field(default=None, metadata=flag(
        "join a running Ray cluster ('auto' or host:port) instead of starting one", "resources and cluster"))
    storage: str | None = field(default=None, metadata=flag(
        "Tune storage path: local dir, NFS path or s3://… (default: CACHE/ray_results)", "resources and cluster"))
    max_failures: int = field(default=2, metadata=flag(
        "retries of a crashing trial (default {default})", "resources and cluster", type=int))
    tracking_uri: str | None = field(default=None, metadata=flag(
        "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///CACHE/mlflow.db)", "tracking"))
    experiment: str = field(default=vocab.EXPERIMENT, metadata=flag(
        "MLflow experiment name (default {default})", "tracking"))
    name: str | None = field(default=None, metadata=flag(
        "sweep name (default: derived from the grid and settings; rerunning the same command resumes the same "
        "sweep)", "tracking"))
    # -1 (-q): header, failures, report; 0: a line per trial; 1 (-v): Tune's own output
    verbose: int = field(default=DEFAULT, metadata=flag(
        "Tune's own output (trial boxes, trial logs) instead of one line per trial; -vv adds every epoch's result",
        "output", flags=("-v", "--verbose"), action="count"))
    # tests' fault injection (sweeps.fault_injection), from the environment only: no flag, users never see it
    fail_once: str | None = field(default_factory=lambda: os.environ.get(FAIL_ONCE_ENV) or None)

    def __post_init__(self) -> None:
        fail_once_spec(self.fail_once)  # a malformed switch fails before any work
        if error := control_error(self.fusions, self.control):
            raise ValueError(error)
        self.cache_dir = Path(self.cache_dir).expanduser().resolve()
        if self.extract_on is None:
            self.extract_on = "cluster" if self.address else "driver"
        if self.preset is None:
            self.preset = "demo" if self.data is None else "paper"
        if self.gpus_per_trial != AUTO and not (isinstance(self.gpus_per_trial, int | float)
                                                 and self.gpus_per_trial >= 0):
            raise ValueError(f"gpus_per_trial = {self.gpus_per_trial!r}; use 'auto' or a fraction >= 0")

    @property
    def arms(self) -> list[tuple[str, str]]:
        return [(f, lab) for f in self.fusions for lab in self.labels]

    @property
    def seeds(self) -> list[int]:
        return [self.seed + r for r in range(self.repeats)]

    def base_config(self) -> dict[str, Any]:
        """The flat run-config values every trial of the sweep shares (before the grid's factors)."""
        from erc.protocol import protocol_values  # numpy and pandas: not for --help

        # the protocol's values first: --config values and explicit flags override single items of it
        flat = {"preset": self.preset, "seed": self.seed, **protocol_values(self.protocol, self.mode),
                **(FINETUNE_DEMO if self.finetune_demo else {}), **self.hparams}
        if self.epochs is not None:
            flat["epochs"] = self.epochs
        return flat

    @property
    def finetune_demo(self) -> bool:
        return self.mode == "finetune" and self.data is None

    @property
    def epoch_checkpoints(self) -> bool:
        """Grid trials checkpoint every epoch: long finetune trials, and trials told to fail after an epoch."""
        return self.mode == "finetune" or (self.fail_once is not None and "@" in self.fail_once)

    def storage_path(self) -> str:
        return self.storage or str(self.cache_dir / "ray_results")

    def fingerprint(self) -> str:
        """What defines the sweep's results (the fields marked ``fingerprint``): reruns with the same
        settings resume the same sweep."""
        blob = json.dumps({f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                           if f.metadata.get("fingerprint")}, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:8]

    def sweep_name(self, kind: str = "ablation") -> str:
        if self.name:
            return self.name
        grid = f"{len(self.folds)}folds-{'+'.join(self.fusions)}-{'+'.join(self.labels)}"
        return f"{kind}-{'demo' if self.data is None else 'data'}-{grid}-{self.fingerprint()}"

    def as_params(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["cache_dir"] = str(self.cache_dir)
        return out


def flag_fields(script: str) -> list[dataclasses.Field]:
    """The settings fields that are flags of ``script``, in declaration order."""
    return [f for f in dataclasses.fields(SweepSettings) if "help" in f.metadata and script in f.metadata["scripts"]]


def default_of(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


# --------------------------------------------------------------------------- switches

@dataclass(frozen=True)
class Shortcut:
    """A switch that sets several settings at once (it is not a setting itself)."""

    flags: tuple[str, ...]
    group: str
    help: str
    values: Mapping[str, Any]

    @property
    def dest(self) -> str:
        return self.flags[-1].lstrip("-").replace("-", "_")


SHORTCUTS = (
    Shortcut(("--smoke-test",), "arms and folds", "the smallest end-to-end run: "
             + ", ".join(f"{k} {','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in SMOKE.items()),
             SMOKE),
    Shortcut(("-q", "--quiet"), "output", "only the header, failures and the report: no line per trial, no "
             "status line", {"verbose": QUIET}),
)


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def add_arguments(parser: argparse.ArgumentParser, *, script: str,
                  defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Add ``script``'s settings flags (and the shortcuts) to ``parser``; return its help groups by name.

    ``defaults`` overrides a field's default for this script (search: one fold, one arm). The
    ``output`` group is mutually exclusive (``-v`` or ``-q``).
    """
    fields = flag_fields(script)
    defaults = {**{f.name: default_of(f) for f in fields}, **(defaults or {})}
    used = {f.metadata["group"] for f in fields} | {s.group for s in SHORTCUTS}
    groups: dict[str, Any] = {}
    for name in GROUPS:
        if name in used:
            group = parser.add_argument_group(name)
            groups[name] = group.add_mutually_exclusive_group() if name == "output" else group
    for f in fields:
        meta = f.metadata
        flags = meta["flags"] or ("--" + f.name.replace("_", "-"),)
        kwargs = dict(meta["argparse"])
        help_text = meta["help"].replace("{default}", _shown(defaults[f.name]))
        groups[meta["group"]].add_argument(*flags, dest=f.name, default=defaults[f.name], help=help_text, **kwargs)
    for shortcut in SHORTCUTS:
        groups[shortcut.group].add_argument(*shortcut.flags, dest=shortcut.dest, action="store_true",
                                            help=shortcut.help)
    return groups


def select_metric_argument(parser: Any, flag: str = "--metric") -> None:
    parser.add_argument(flag, choices=vocab.METRIC_KEYS + vocab.LOSS_KEYS, default=vocab.DEFAULT_SELECT_METRIC,
                        help="validation metric (losses are minimised, everything else maximised; "
                             f"default {vocab.DEFAULT_SELECT_METRIC})")


def settings_from_args(args: argparse.Namespace, **extra: Any) -> SweepSettings:
    """Settings from parsed flags: every settings field the namespace holds, then the shortcuts given
    (``--smoke-test`` overrides folds, epochs and preset), then ``extra``."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SweepSettings) if hasattr(args, f.name)}
    for shortcut in SHORTCUTS:
        if getattr(args, shortcut.dest, False):
            values.update(shortcut.values)
    return SweepSettings(**{**values, **extra})


# --------------------------------------------------------------------------- config files

def load_config_file(path: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A YAML of run-config values: top-level values for every arm, ``arms:`` per ``fusion-labels``.

    ``search.py`` writes this format; ``fusion``/``labels``/``fold`` in it are ignored (the grid sets them).
    """
    from erc.config import RunConfig

    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise TypeError(f"{path}: expected a mapping of hyper-parameters, got {type(data).__name__}")

    def hyperparameters(values: dict) -> dict:  # the grid sets the arm and the fold
        return {k: v for k, v in values.items() if k not in ("fusion", "labels", "fold")}

    arms = {arm: hyperparameters(values) for arm, values in (data.pop("arms", {}) or {}).items()}
    data = hyperparameters(data)
    for where, values in [("top level", data), *arms.items()]:
        try:
            RunConfig.from_flat({**data, **values})
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path} ({where}): {err.args[0] if err.args else err}") from None
    return data, arms


def check_layers(layers: str, base: dict[str, Any], arm_hparams: dict[str, dict[str, Any]]) -> None:
    """A ValueError, before any extraction, when runs read layers a last-layer cache lacks."""
    from erc.config import RunConfig

    if layers == "all":
        return
    for where, values in [("", {}), *((f" (arm {arm})", v) for arm, v in arm_hparams.items())]:
        chosen = RunConfig.from_flat({**base, **values}).layers
        if chosen.needs_stack:
            raise ValueError(f"audio_layer={chosen.audio_layer!r}, text_layer={chosen.text_layer!r}{where} read "
                             "every encoder layer: add --layers all")

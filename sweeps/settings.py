"""Sweep settings: one dataclass, filled from the command line, passed down explicitly.

The flags both entry scripts share are defined here once (``add_common_arguments``), with the same
names and the same parsing: a bad value is an argparse usage error listing the choices.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from erc.config import RunConfig, defaults
from erc.data.folds import N_FOLDS
from erc.features import LAYER_MODES
from erc.losses import LABEL_ARMS
from erc.metrics import LOSS_KEYS, METRIC_KEYS
from erc.model import FUSIONS, PRESETS
from erc.protocol import MODES, PROTOCOLS, protocol_values

FOLDS = tuple(range(N_FOLDS))
EXTRACT_ON = ("driver", "cluster")
PAPER_AUDIO, PAPER_TEXT = "kresnik/wav2vec2-large-xlsr-korean", "klue/roberta-large"
# Fault injection for tests: trials whose run name contains this pattern fail their first attempt.
FAIL_ONCE_ENV = "ERC_FAIL_ONCE"
# --smoke-test: the smallest run that still goes through every stage
SMOKE = {"folds": [0], "epochs": 1, "preset": "demo"}
# --mode finetune on the built-in demo: a smaller corpus (80 utterances) and few epochs, so the 30-trial
# grid of fine-tuned demo encoders runs in minutes on a CPU (an epoch of the full demo corpus: ~2 min)
FINETUNE_DEMO = {"epochs": 2, "batch_size": 8}
FINETUNE_DEMO_CORPUS = {"kemdy19_sessions": 5, "kemdy20_sessions": 5, "utterances_per_speaker": 4}


@dataclass
class SweepSettings:
    data: str | None = None  # None: the embedded demo corpus and encoders
    audio_encoder: str | None = None
    text_encoder: str | None = None
    cache_dir: Path = field(default_factory=lambda: Path(os.environ.get("ERC_CACHE", "~/.cache/erc-sweeps")))
    folds: list[int] = field(default_factory=lambda: list(FOLDS))
    fusions: list[str] = field(default_factory=lambda: list(FUSIONS))
    labels: list[str] = field(default_factory=lambda: list(LABEL_ARMS))
    preset: str | None = None  # None: demo on the demo corpus, paper with --data
    mode: str = "cached"  # cached: heads on cached vectors; finetune: encoders + head end to end
    protocol: str = "default"  # a named bundle of run-config values (erc.protocol.PROTOCOLS)
    epochs: int | None = None  # None: the run config's default
    hparams: dict[str, Any] = field(default_factory=dict)  # flat run-config values for every arm
    arm_hparams: dict[str, dict[str, Any]] = field(default_factory=dict)  # "outer-peakl" -> values
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | str = "auto"  # auto: measured by a probe when the cluster has GPUs (sweeps/gpus.py)
    max_concurrent: int | None = None
    address: str | None = None
    storage: str | None = None
    tracking_uri: str | None = None
    experiment: str = "erc-sweeps"
    name: str | None = None
    seed: int = 0
    repeats: int = 1
    max_failures: int = 2
    fail_once: str | None = field(default_factory=lambda: os.environ.get(FAIL_ONCE_ENV) or None)
    tune_per_arm: int = 0
    identity: dict[str, Any] = field(default_factory=dict)  # what else defines the sweep (a search's space …)
    verbose: int = 0  # -1 (-q): header, failures, report; 0: a line per trial; 1 (-v): Tune's own output
    layers: str = "last"  # the feature cache: the last layer's vectors, or every layer's too (erc.layers)
    extract_on: str | None = None  # where missing features are computed; None: cluster with an address

    def __post_init__(self) -> None:
        fail_once_spec(self.fail_once)  # a malformed switch fails before any work
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
        """What defines the sweep's results: reruns with the same settings resume the same sweep."""
        keys = ("data", "audio_encoder", "text_encoder", "folds", "fusions", "labels", "preset", "epochs", "hparams",
                "arm_hparams", "seed", "repeats", "tune_per_arm", "identity", "mode", "protocol")
        blob = json.dumps({k: getattr(self, k) for k in keys}, sort_keys=True, default=str)
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


def fail_once_spec(value: str | None) -> tuple[str, int | None] | None:
    """``pattern`` or ``pattern@epoch`` → (pattern, epoch or None); None when the switch is off."""
    if not value:
        return None
    pattern, sep, epoch = value.rpartition("@")
    if not sep:
        return value, None
    if not epoch.isdigit() or int(epoch) < 1 or not pattern:
        raise ValueError(f"{value!r}: expected <run-name pattern> or <run-name pattern>@<epoch>, epoch >= 1")
    return pattern, int(epoch)


AUTO = "auto"


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


def choice_list(choices: tuple, kind: type = str) -> Callable[[str], list]:
    """argparse type for ``a,b,c`` with every item one of ``choices`` (a usage error otherwise)."""

    def parse(text: str) -> list:
        try:
            values = [kind(x.strip()) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated list of "
                                             f"{', '.join(map(str, choices))}") from None
        bad = [v for v in values if v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"{bad or 'empty'} in {text!r}; choose from "
                                             f"{','.join(map(str, choices))}")
        return list(dict.fromkeys(values))  # each once, in the order given

    return parse


def positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def add_common_arguments(parser: argparse.ArgumentParser, *, default_folds: list[int]) -> None:
    """Flags shared by ablation.py and search.py: same names, same meaning, same parsing."""
    base = defaults()
    grid = parser.add_argument_group("arms and folds")
    grid.add_argument("--folds", type=choice_list(FOLDS, int), default=default_folds,
                      help=f"validation folds (default {','.join(map(str, default_folds))})")
    grid.add_argument("--fusions", type=choice_list(FUSIONS), default=list(FUSIONS), help=",".join(FUSIONS))
    grid.add_argument("--labels", type=choice_list(LABEL_ARMS), default=list(LABEL_ARMS), help=",".join(LABEL_ARMS))
    grid.add_argument("--preset", choices=sorted(PRESETS), default=None,
                      help="head sizes (default: demo on the demo corpus, paper with --data)")
    grid.add_argument("--mode", choices=MODES, default="cached",
                      help="cached: train heads on frozen encoders' cached vectors (default); finetune: train "
                           "both encoders with the head end to end, as the paper did")
    grid.add_argument("--protocol", choices=sorted(PROTOCOLS), default="default",
                      help="default: DESIGN §3–§5; paper: the original code's recipe (each item an ordinary "
                           "config key that --config can override; in cached mode only the items that apply)")
    grid.add_argument("--epochs", type=positive(int), default=None, help=f"epochs per trial (default {base['epochs']})")
    grid.add_argument("--seed", type=int, default=0)
    grid.add_argument("--smoke-test", action="store_true",
                      help="the smallest end-to-end run: fold 0, 1 epoch, demo preset")
    data = parser.add_argument_group("data and encoders")
    data.add_argument("--data", help="root holding KEMDy19/ and/or KEMDy20_v1_1/ (default: the built-in demo)")
    data.add_argument("--audio-encoder", help=f"hub id or local dir (default with --data: {PAPER_AUDIO})")
    data.add_argument("--text-encoder", help=f"hub id or local dir (default with --data: {PAPER_TEXT})")
    data.add_argument("--cache-dir", type=Path, default=None,
                      help="demo data, encoders, feature cache, MLflow store, Ray results "
                           "(default: $ERC_CACHE or ~/.cache/erc-sweeps)")
    data.add_argument("--layers", choices=LAYER_MODES, default="last",
                      help="feature cache: 'last' = the encoders' last layer (default); 'all' = every hidden "
                           "layer's vectors too (float16), which runs with audio_layer/text_layer = an index or "
                           "'weighted' read")
    data.add_argument("--extract-on", choices=EXTRACT_ON, default=None,
                      help="where missing features are computed: 'cluster' = a Ray Data job over the cluster's "
                           "workers (GPU actors when it has GPUs), the default with --address; 'driver' = this "
                           "process, the default otherwise")
    run = parser.add_argument_group("resources and cluster")
    run.add_argument("--cpus-per-trial", type=positive(float), default=1.0, help="CPUs per trial (default 1)")
    run.add_argument("--gpus-per-trial", type=gpus_argument, default=AUTO,
                     help="fraction of a GPU per trial, or 'auto' (default): one probe step of the largest "
                          "configuration on a GPU node measures its peak memory and packs as many trials per "
                          "GPU as fit with 20%% headroom; 0 without GPUs")
    run.add_argument("--max-concurrent", type=positive(int), default=None, help="cap on trials running at once")
    run.add_argument("--address", help="join a running Ray cluster ('auto' or host:port) instead of starting one")
    run.add_argument("--storage", help="Tune storage path: local dir, NFS path or s3://… (default: CACHE/ray_results)")
    run.add_argument("--max-failures", type=int, default=2, help="retries of a crashing trial (default 2)")
    track = parser.add_argument_group("tracking")
    track.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                                              "sqlite:///CACHE/mlflow.db)")
    track.add_argument("--experiment", default="erc-sweeps", help="MLflow experiment name")
    track.add_argument("--name", help="sweep name (default: derived from the grid and settings; "
                                      "rerunning the same command resumes the same sweep)")
    out = parser.add_argument_group("output").add_mutually_exclusive_group()
    out.add_argument("-v", "--verbose", action="count", default=0,
                     help="Tune's own output (trial boxes, trial logs) instead of one line per trial; "
                          "-vv adds every epoch's result")
    out.add_argument("-q", "--quiet", action="store_true",
                     help="only the header, failures and the report: no line per trial, no status line")


def select_metric_argument(parser: argparse.ArgumentParser, flag: str = "--metric") -> None:
    parser.add_argument(flag, choices=METRIC_KEYS + LOSS_KEYS, default=defaults()["select_metric"],
                        help="validation metric (losses are minimised, everything else maximised; "
                             f"default {defaults()['select_metric']})")


def load_config_file(path: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A YAML of run-config values: top-level values for every arm, ``arms:`` per ``fusion-labels``.

    ``search.py`` writes this format; ``fusion``/``labels``/``fold`` in it are ignored (the grid sets them).
    """
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
    if layers == "all":
        return
    for where, values in [("", {}), *((f" (arm {arm})", v) for arm, v in arm_hparams.items())]:
        chosen = RunConfig.from_flat({**base, **values}).layers
        if chosen.needs_stack:
            raise ValueError(f"audio_layer={chosen.audio_layer!r}, text_layer={chosen.text_layer!r}{where} read "
                             "every encoder layer: add --layers all")


def settings_from_args(args: argparse.Namespace, **extra: Any) -> SweepSettings:
    """Settings from the common flags (``--smoke-test`` overrides folds, epochs and preset)."""
    kwargs = {k: getattr(args, k) for k in ("data", "audio_encoder", "text_encoder", "folds", "fusions", "labels",
                                            "preset", "mode", "protocol", "epochs", "cpus_per_trial",
                                            "gpus_per_trial",
                                            "max_concurrent", "address", "storage", "tracking_uri", "experiment",
                                            "name", "seed", "max_failures", "layers", "extract_on")}
    if args.smoke_test:
        kwargs.update(SMOKE)
    if args.cache_dir is not None:
        kwargs["cache_dir"] = args.cache_dir
    kwargs["verbose"] = -1 if args.quiet else args.verbose
    return SweepSettings(**{**kwargs, **extra})

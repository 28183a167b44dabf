"""Sweep settings: one dataclass, filled from the command line, passed down explicitly."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FOLDS, FUSIONS, LABELS = (0, 1, 2, 3, 4), ("concat", "outer"), ("hard", "soft", "peakl")
PAPER_AUDIO, PAPER_TEXT = "kresnik/wav2vec2-large-xlsr-korean", "klue/roberta-large"


@dataclass
class SweepSettings:
    data: str | None = None  # None: the embedded demo corpus and encoders
    audio_encoder: str | None = None
    text_encoder: str | None = None
    cache_dir: Path = field(default_factory=lambda: Path(os.environ.get("ERC_CACHE", "~/.cache/erc-sweeps")))
    folds: list[int] = field(default_factory=lambda: list(FOLDS))
    fusions: list[str] = field(default_factory=lambda: list(FUSIONS))
    labels: list[str] = field(default_factory=lambda: list(LABELS))
    epochs: int | None = None
    hparams: dict[str, Any] = field(default_factory=dict)  # fit-config values for every arm
    arm_hparams: dict[str, dict[str, Any]] = field(default_factory=dict)  # "outer-peakl" -> values
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: 0.25 with CUDA, else 0
    max_concurrent: int | None = None
    address: str | None = None
    storage: str | None = None
    tracking_uri: str | None = None
    experiment: str = "erc-sweeps"
    name: str | None = None
    seed: int = 0
    repeats: int = 1
    max_failures: int = 2
    fail_once: str | None = None  # fault injection for tests: run-name substring
    tune_per_arm: int = 0
    verbose: int = 1

    def __post_init__(self) -> None:
        self.cache_dir = Path(self.cache_dir).expanduser().resolve()
        bad = [f for f in self.folds if f not in FOLDS]
        if bad:
            raise ValueError(f"--folds: {bad} not in {list(FOLDS)}")
        for flag, values, allowed in (("--fusions", self.fusions, FUSIONS), ("--labels", self.labels, LABELS)):
            unknown = [v for v in values if v not in allowed]
            if unknown or not values:
                raise ValueError(f"{flag}: {unknown or 'empty'}; choose from {list(allowed)}")
        if not self.cpus_per_trial > 0:
            raise ValueError(f"cpus_per_trial must be positive, not {self.cpus_per_trial}")
        if self.gpus_per_trial is None:
            import torch

            self.gpus_per_trial = 0.25 if torch.cuda.is_available() else 0.0

    @property
    def arms(self) -> list[tuple[str, str]]:
        return [(f, lab) for f in self.fusions for lab in self.labels]

    @property
    def seeds(self) -> list[int]:
        return [self.seed + r for r in range(self.repeats)]

    def storage_path(self) -> str:
        return self.storage or str(self.cache_dir / "ray_results")

    def fingerprint(self) -> str:
        """What defines the sweep's results: reruns with the same settings resume the same sweep."""
        keys = ("data", "audio_encoder", "text_encoder", "folds", "fusions", "labels", "epochs", "hparams",
                "arm_hparams", "seed", "repeats", "tune_per_arm")
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


def comma_list(kind: type):
    def parse(text: str) -> list:
        return [kind(x.strip()) for x in text.split(",") if x.strip()]

    return parse


def cpu_amount(text: str) -> float:
    """``--cpus-per-trial``: a trial sets torch's thread count from it, and Ray rejects an empty request."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text}: a trial needs a positive CPU share (e.g. 1 or 0.5)")
    return value


def gpu_amount(text: str) -> float:
    """``--gpus-per-trial``: a fraction of one GPU (0.25: four trials share it) or a whole number."""
    value = float(text)
    if value < 0 or (value > 1 and not value.is_integer()):
        raise argparse.ArgumentTypeError(f"{text}: use 0, a fraction of one GPU (e.g. 0.25) or a whole number of GPUs")
    return value


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ablation.py and search.py."""
    data = parser.add_argument_group("data and encoders")
    data.add_argument("--data", help="root holding KEMDy19/ and/or KEMDy20_v1_1/ (default: the built-in demo)")
    data.add_argument("--audio-encoder", help=f"hub id or local dir (default with --data: {PAPER_AUDIO})")
    data.add_argument("--text-encoder", help=f"hub id or local dir (default with --data: {PAPER_TEXT})")
    data.add_argument("--cache-dir", type=Path, default=None,
                      help="demo data, encoders, feature cache, MLflow store, Ray results "
                           "(default: $ERC_CACHE or ~/.cache/erc-sweeps)")
    run = parser.add_argument_group("resources and cluster")
    run.add_argument("--cpus-per-trial", type=cpu_amount, default=1.0, help="CPUs per trial, > 0 (default 1)")
    run.add_argument("--gpus-per-trial", type=gpu_amount, default=None,
                     help="fraction of a GPU per trial (default: 0.25 when CUDA is visible, else 0)")
    run.add_argument("--max-concurrent", type=int, default=None, help="cap on trials running at once")
    run.add_argument("--address", help="join a running Ray cluster ('auto' or host:port) instead of starting one")
    run.add_argument("--storage", help="Tune storage path: local dir, NFS path or s3://… (default: CACHE/ray_results)")
    run.add_argument("--max-failures", type=int, default=2, help="retries of a crashing trial (default 2)")
    track = parser.add_argument_group("tracking")
    track.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                                              "sqlite:///CACHE/mlflow.db)")
    track.add_argument("--experiment", default="erc-sweeps", help="MLflow experiment name")
    track.add_argument("--name", help="sweep name (default: derived from the grid and settings; "
                                      "rerunning the same command resumes the same sweep)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: the preset's)")
    parser.add_argument("--fail-once", metavar="PATTERN",
                        help="testing: make the first attempt of trials whose run name contains PATTERN "
                             "(e.g. fold0-outer-peakl) raise, to exercise retries")
    parser.add_argument("--quiet", action="store_true", help="less Tune output")


def load_config_file(path: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A YAML of fit hyper-parameters: top-level values for every arm, ``arms:`` per ``fusion-labels``.

    ``search.py`` writes this format; ``fusion``/``labels`` in it are ignored (the grid sets them).
    """
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise TypeError(f"{path}: expected a mapping of hyper-parameters, got {type(data).__name__}")
    from erc.train import resolve_config

    def hyperparameters(values: dict) -> dict:  # the grid sets the arm and the fold
        return {k: v for k, v in values.items() if k not in ("fusion", "labels", "fold")}

    arms = {arm: hyperparameters(values) for arm, values in (data.pop("arms", {}) or {}).items()}
    data = hyperparameters(data)
    for where, values in [("top level", data), *arms.items()]:
        try:
            resolve_config(values)
        except (KeyError, ValueError) as err:
            raise ValueError(f"{path} ({where}): {err}") from None
    return data, arms


def settings_from_args(args: argparse.Namespace, **extra: Any) -> SweepSettings:
    kwargs = {k: getattr(args, k) for k in ("data", "audio_encoder", "text_encoder", "cpus_per_trial",
                                            "gpus_per_trial", "max_concurrent", "address", "storage",
                                            "tracking_uri", "experiment", "name", "seed", "epochs",
                                            "max_failures", "fail_once")}
    if args.cache_dir is not None:
        kwargs["cache_dir"] = args.cache_dir
    kwargs["verbose"] = 0 if args.quiet else 1
    return SweepSettings(**kwargs, **extra)

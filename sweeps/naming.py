"""What a trial is called and tagged in MLflow: one class for grid and search trials alike."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from erc import contract as C

# config keys that describe the trial rather than the model (never passed to RunConfig)
TRIAL_KEYS = (C.FOLD,)
# the search parameters a search trial's name shows, in this order
_NAMED_PARAMS = ("lr", "dim", "depth", "proj_dim", "batch_size")


@dataclass(frozen=True)
class TrialLabels:
    """Run name and tags of a trial from its config (picklable: Tune stores it with the experiment).

    Grid trials are named ``fold0-outer-peakl`` (``-seed1`` with repeats); search trials
    ``<prefix> lr=…,dim=…`` after the parameters being searched.
    """

    stage: str = C.GRID_STAGE
    with_seed: bool = False
    prefix: str | None = None  # search trials: default their study's name, e.g. "outer-peakl fold0"
    extra_tags: Mapping[str, str] = field(default_factory=dict)

    def name(self, config: Mapping[str, Any]) -> str:
        if self.stage == C.SEARCH_STAGE:
            shown = {k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in config.items() if k in _NAMED_PARAMS}
            prefix = self.prefix if self.prefix is not None else study_name(config)
            return prefix + " " + ",".join(f"{k}={v}" for k, v in shown.items())
        name = f"fold{config[C.FOLD]}-{C.arm_name(config[C.FUSION], config[C.LABELS])}"
        return name + f"-seed{config[C.SEED]}" if self.with_seed else name

    def tags(self, config: Mapping[str, Any]) -> dict[str, str]:
        tags = {C.STAGE: self.stage, C.FUSION: str(config[C.FUSION]), C.LABELS: str(config[C.LABELS]),
                C.ARM: C.arm_name(config[C.FUSION], config[C.LABELS])}
        if C.FOLD in config:
            tags[C.FOLD] = str(config[C.FOLD])
        if C.SEED in config:
            tags[C.SEED] = str(config[C.SEED])
        return {**tags, **self.extra_tags}


def study_name(config: Mapping[str, Any]) -> str:
    """The search a trial belongs to: its arm, and its outer fold when it has one (``outer-peakl fold0``).

    Concurrent searches share one Tune experiment; this is what keeps their trials apart (one
    Optuna study, one set of ASHA brackets and one MLflow search run per name).
    """
    arm = C.arm_name(config[C.FUSION], config[C.LABELS])
    return f"{arm} fold{config[C.FOLD]}" if C.FOLD in config else arm


def run_config_keys(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a trial's config that is the run config (the fold is the trial's own)."""
    return {k: v for k, v in config.items() if k not in TRIAL_KEYS}

"""What a trial reports to Tune and the MLflow callback records, under the contract's names.

A trial's result dicts (an epoch's, the final one) and its MLflow params are built here, so the
trainable only decides *when* to report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from erc import contract as C
from erc.config import RunConfig
from erc.layers import layer_weights
from erc.metrics import is_better
from erc.trainer import FitResult, Trainer
from sweeps.naming import run_config_keys


def full_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """What a trial's MLflow params record: its fold and the fully resolved run config."""
    trial = {k: config[k] for k in (C.FOLD,) if k in config}
    return {**trial, **RunConfig.from_flat(run_config_keys(config)).to_flat()}


def epoch_report(metrics: Mapping[str, float], dev: Mapping[str, float] | None = None) -> dict[str, float]:
    """An epoch's metrics under the contract's prefixes: the held-out fold's (``valid/``), the training
    loss, and the dev split's (``dev/``) when the trial has one."""
    out = {(C.TRAIN_PREFIX + "loss" if k == "train_loss" else C.VALID_PREFIX + k): float(v)
           for k, v in metrics.items() if k != "epoch"}
    out.update({C.DEV_PREFIX + k: float(v) for k, v in (dev or {}).items() if k != "epoch"})
    return out


def dev_report(trainers: Sequence[Trainer]) -> dict[str, float] | None:
    """The dev metrics of the trainers' latest epoch (the mean over a search trial's splits); None
    without a dev set."""
    latest = [t.dev_history[-1] for t in trainers if t.dev_history]
    if not latest:
        return None
    return {k: float(np.mean([m[k] for m in latest])) for k in latest[0] if k != "epoch"}


def best_values(history: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Each metric's own best over the epochs (max; min for losses) — the paper's way of reporting."""
    best: dict[str, float] = {}
    for metrics in history:
        for key, value in metrics.items():
            if key != "epoch" and is_better(value, best.get(key), key):
                best[key] = float(value)
    return best


def layer_weight_report(trainers: Sequence[Trainer]) -> dict[str, float]:
    """Each mixed layer's softmax weight now (the mean over a search trial's splits)."""
    weights = [layer_weights(t.head) for t in trainers]
    return {f"{C.LAYER_WEIGHT_PREFIX}{modality}_{i}": float(np.mean([w[modality][i] for w in weights]))
            for modality, values in weights[0].items() for i in range(len(values))}


def gpu_memory() -> dict[str, float]:
    """The trial's peak CUDA memory so far (nothing without CUDA)."""
    if not torch.cuda.is_available():
        return {}
    return {C.GPU_PEAK_MEMORY: torch.cuda.max_memory_allocated() / 2**20}


def final_report(result: FitResult, base: Mapping[str, Any]) -> dict[str, Any]:
    """A grid trial's last result: every held-out metric at the epoch chosen on the selection set
    (``selected/``), at the epoch the held-out fold itself picks (``oracle/``), each metric's own best
    (``best/``), the robustness conditions (``robust/<condition>/``, when evaluated) and ``base`` (node,
    fold sizes)."""
    return {**base, C.RESULT_EPOCH: result.selected_epoch, C.SELECTED_PREFIX + "epoch": result.selected_epoch,
            **{C.SELECTED_PREFIX + k: float(v) for k, v in result.metrics.items() if k != "epoch"},
            C.ORACLE_PREFIX + "epoch": result.oracle_epoch,
            **{C.ORACLE_PREFIX + k: float(v) for k, v in result.oracle_metrics.items() if k != "epoch"},
            **{C.BEST_PREFIX + k: v for k, v in best_values(result.history).items()},
            **{f"{C.ROBUST_PREFIX}{condition}/{k}": float(v) for condition, metrics in (result.robust or {}).items()
               for k, v in metrics.items()},
            **gpu_memory()}


def split_ids(train: Any, dev: Any | None, test: Any) -> dict[str, list[str]]:
    """``split.json``: the segment ids a grid trial trained on, chose its epoch on, and reported."""
    return {"train": train.segment_id.tolist(), "dev": [] if dev is None else dev.segment_id.tolist(),
            "test": test.segment_id.tolist()}

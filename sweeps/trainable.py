"""The Tune trainable: one trial = one run configuration trained on one or more splits (DESIGN §6).

Only the trial itself lives here; what it reports is :mod:`sweeps.results`, its checkpoints
:mod:`sweeps.checkpoints` (figures: :mod:`sweeps.plots`), the test switch that fails it :mod:`sweeps.fault_injection`.

Grid and search trials share it. The feature table arrives once through Ray's object store
(``tune.with_parameters``); the trial splits it by fold. A grid trial trains one split (its fold)
and ends with the selected epoch's metrics and a checkpoint directory (head, predictions,
history, confusion matrix). A search trial trains several splits in lockstep on this thread and
reports each epoch's mean over them, plus ``score``, the running best of the mean tuned metric
(what OptunaSearch and ASHA read).

Finetune mode (``settings['mode']``): the trial loads both encoders and trains them with the head
(:mod:`erc.finetune`) on the input table; its grid trials checkpoint every epoch (``epoch_checkpoints``)
and its final artifact is ``model.pt`` (encoders + head) instead of ``head.pt``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray import tune

from erc import contract as C
from erc.config import RunConfig
from erc.heads import model_size
from erc.inputs import InputTable
from erc.protocol import select_rows
from erc.table import FeatureTable
from erc.trainer import Trainer
from erc.vocab import NO_FOLD, metric_mode
from sweeps import checkpoints
from sweeps.fault_injection import inject_failure
from sweeps.naming import run_config_keys
from sweeps.results import dev_report, epoch_report, final_report, gpu_memory, layer_weight_report, split_ids

# (validation fold, folds kept out of training too)
Split = tuple[int, tuple[int, ...]]

# Each tune.report blocks the trial until the driver asks for the next result (a round trip of
# 20–50 ms on two busy cores, ~0.7 s of a 3 s demo trial's 15 epochs). A grid trial without epoch
# checkpoints needs no per-epoch result (nothing schedules on it and a retry starts afresh): it reports
# its first epoch at once (its run shows it alive, on its node), then its epochs at most this often,
# batched, and the last ones with its final result.
EPOCH_REPORT_INTERVAL_S = 2.0


def trial_splits(run_config: RunConfig, data: FeatureTable | InputTable, splits: Sequence[Split], *,
                 search: bool) -> list[tuple[Any, Any, Any]]:
    """(train, dev, held-out) rows of each split (DESIGN §14).

    A grid trial carves its dev set from its training sessions (``select_on='dev'``, the default) or
    has none (``select_on='valid'``). A search trial has none: it is scored on its validation fold, which
    for ``--tune-per-arm`` is a fold of the outer fold's training data (the outer fold is excluded), so
    no held-out fold enters the search either. (The GPU probe, one step on a few rows, asks like a search.)
    On a corpus with an official partition (fold :data:`~erc.vocab.NO_FOLD`) a search trial trains on the
    train part and is scored on the dev part: the test part stays unseen until the grid reports it.
    """
    if search:
        return [search_split(data, valid, exclude) for valid, exclude in splits]
    return [data.split_for(valid, run_config.protocol.select_on, exclude=exclude) for valid, exclude in splits]


def search_split(data: FeatureTable | InputTable, valid: int, exclude: Sequence[int]) -> tuple[Any, None, Any]:
    """(train, None, scored-on) rows of one search split (see :func:`trial_splits`)."""
    if valid == NO_FOLD:
        train, dev, _ = data.split_dev(NO_FOLD)
        return train, None, dev
    train, held_out = data.split(valid, exclude=exclude)
    return train, None, held_out


def make_trainers(run_config: RunConfig, parts: Sequence[tuple[Any, Any, Any]], settings: Mapping[str, Any]
                  ) -> list[Trainer]:
    """One trainer per (train, dev, held-out) split: heads on cached vectors, or (``settings['mode'] ==
    'finetune'``) encoders loaded from ``settings['audio_encoder']`` / ``['text_encoder']`` and trained
    with the head."""
    if settings.get("mode", "cached") == "finetune":
        from erc.finetune import FinetuneTrainer

        return [FinetuneTrainer(run_config, train, valid, dev=dev, audio_encoder=settings["audio_encoder"],
                                text_encoder=settings["text_encoder"])
                for train, dev, valid in parts]
    return [Trainer(run_config, train, valid, dev=dev) for train, dev, valid in parts]


def train_trial(config: dict[str, Any], data: FeatureTable | InputTable, settings: Mapping[str, Any]) -> None:
    """Function trainable; ``data`` (a FeatureTable, or an InputTable in finetune mode) and ``settings``
    are bound by ``tune.with_parameters``.

    ``settings['splits']``, when given, lists the ``(valid_fold, excluded_folds)`` splits of a search
    trial; otherwise the trial validates on ``config['fold']``. With ``settings['epoch_checkpoints']``
    a grid trial checkpoints its whole state after every epoch and a retried or restored trial
    continues from there: no epoch runs (or is reported) twice.
    """
    torch.set_num_threads(max(1, int(settings.get("cpus_per_trial", 1))))  # no oversubscription
    latest = checkpoints.latest()
    if latest is not None and latest.final is not None:
        # finished before the driver was interrupted: report it again, don't retrain (and don't copy the
        # checkpoint again: Tune restored it as the trial's latest)
        tune.report(latest.final)
        return
    run_config = RunConfig.from_flat(run_config_keys(config))
    search = "splits" in settings
    splits: list[Split] = settings["splits"] if search else [(int(config[C.FOLD]), ())]
    data = select_rows(data, run_config.protocol.data_selection, settings.get("paper_excluded"))
    parts = trial_splits(run_config, data, splits, search=search)
    trainers = make_trainers(run_config, parts, settings)
    score: float | None = None
    if latest is not None:
        for trainer, state in zip(trainers, latest.state["trainers"], strict=True):
            trainer.load_state_dict(state)
        score = latest.state["score"]
    node = {C.RESULT_NODE_ID: ray.get_runtime_context().get_node_id(),
            C.RESULT_NODE_IP: ray.util.get_node_ip_address()}
    # what was actually trained and evaluated on (the hard arm has already dropped its ties)
    base = {**node, C.N_TRAIN: sum(len(t.train_rows) for t in trainers),
            C.N_VALID: sum(len(t.valid_rows) for t in trainers),
            C.N_DEV: sum(0 if t.dev_rows is None else len(t.dev_rows) for t in trainers)}
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    metric = settings.get("metric", run_config.select_metric)
    mode = metric_mode(metric)
    every_epoch = bool(settings.get("epoch_checkpoints")) and not search
    batched = not search and not every_epoch
    pending: list[dict[str, Any]] = []  # epochs of a batched trial not yet reported
    last_report, interval = -float("inf"), float(settings.get("epoch_report_interval_s", EPOCH_REPORT_INTERVAL_S))
    while not all(t.done for t in trainers):
        # lockstep: one epoch of every split, then report (a split stopped early keeps its last epoch)
        per_split = [t.history[-1] if t.done else t.run_epoch() for t in trainers]
        epoch = max(t.epoch for t in trainers)
        inject_failure(settings, config, epoch, reported=False)
        mean = {k: float(np.mean([m[k] for m in per_split])) for k in per_split[0] if k != "epoch"}
        report = {**base, C.RESULT_EPOCH: epoch, **epoch_report(mean, dev_report(trainers)), **gpu_memory(),
                  **layer_weight_report(trainers)}
        if search:
            value = mean[metric]
            score = value if score is None else (max(score, value) if mode == "max" else min(score, value))
            report[C.RESULT_SCORE] = score
        if every_epoch:
            checkpoint, tmp = checkpoints.state_checkpoint(trainers, score)
            with tmp:
                tune.report(report, checkpoint=checkpoint)
        elif not batched:
            tune.report(report)
        elif time.monotonic() - last_report < interval or all(t.done for t in trainers):
            pending.append(report)  # the last epochs travel with the final result
        else:
            tune.report({**report, C.RESULT_EARLIER_EPOCHS: pending})
            pending, last_report = [], time.monotonic()
        inject_failure(settings, config, epoch, reported=True)
    if not search:
        result = trainers[0].result()
        result.robust = trainers[0].robustness()  # the selected weights, one modality missing or noisy
        # the head's size, once (model/params, model/flops); in finetune mode the encoders are not counted
        final = {**final_report(result, base), **model_size(trainers[0].head)}
        if pending:
            final[C.RESULT_EARLIER_EPOCHS] = pending
        model_file = Path(C.MODEL_CHECKPOINT if settings.get("mode") == "finetune" else C.HEAD_CHECKPOINT).name
        checkpoint, tmp = checkpoints.final_checkpoint(result, final, model_file, split_ids(*parts[0]),
                                                         parts[0][2].classes)
        with tmp:
            tune.report(final, checkpoint=checkpoint)

"""The Tune trainable: one trial = one run configuration trained on one or more splits (DESIGN §6).

Grid and search trials share it. The feature table arrives once through Ray's object store
(``tune.with_parameters``); the trial splits it by fold. A grid trial trains one split (its fold)
and ends with the selected epoch's metrics and a checkpoint directory (head, predictions,
history, confusion matrix). A search trial trains several splits in lockstep on this thread and
reports each epoch's mean over them, plus ``score``, the running best of the mean tuned metric
(what OptunaSearch and ASHA read).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray import tune

from analysis import contract as C
from erc.config import RunConfig
from erc.layers import layer_weights
from erc.metrics import is_better, metric_mode
from erc.table import FeatureTable
from erc.trainer import FitResult, Trainer
from sweeps.naming import TrialLabels, run_config_keys

# (validation fold, folds kept out of training too)
Split = tuple[int, tuple[int, ...]]


class InjectedFailure(RuntimeError):
    """Raised by the fault-injection switch (``ERC_FAIL_ONCE``) so tests can exercise retries."""


def _inject_failure(settings: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """Fail the first attempt of grid trials whose run name contains ``settings['fail_once']``.

    The "already failed" marker is a file per trial id in a directory the driver chose (on one
    machine or a shared filesystem: the switch is for tests).
    """
    pattern = settings.get("fail_once")
    if not pattern or C.FOLD not in config:
        return
    name = TrialLabels(with_seed=True).name(config)
    if pattern not in name:
        return
    marker = Path(settings["fail_once_dir"]) / tune.get_context().get_trial_id()
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("1")
        raise InjectedFailure(f"injected failure (ERC_FAIL_ONCE={pattern!r}) in {name}")


def full_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """What a trial's MLflow params record: its fold and the fully resolved run config."""
    trial = {k: config[k] for k in (C.FOLD,) if k in config}
    return {**trial, **RunConfig.from_flat(run_config_keys(config)).to_flat()}


def epoch_report(metrics: Mapping[str, float]) -> dict[str, float]:
    """An epoch's metrics under the contract's prefixes."""
    return {(C.TRAIN_PREFIX + "loss" if k == "train_loss" else C.VALID_PREFIX + k): float(v)
            for k, v in metrics.items() if k != "epoch"}


def best_values(history: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Each metric's own best over the epochs (max; min for losses) — the paper's way of reporting."""
    best: dict[str, float] = {}
    for metrics in history:
        for key, value in metrics.items():
            if key != "epoch" and is_better(value, best.get(key), key):
                best[key] = float(value)
    return best


def _confusion_png(result: FitResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    from erc.labels import EMOTIONS

    p = result.predictions
    rated = p.majority >= 0
    fig, ax = plt.subplots(figsize=(6, 5))
    ConfusionMatrixDisplay.from_predictions(p.majority[rated], p.logits[rated].argmax(1),
                                            labels=list(range(len(EMOTIONS))), display_labels=EMOTIONS,
                                            normalize="true", values_format=".2f", ax=ax, colorbar=False,
                                            xticks_rotation=45)
    ax.set_title("validation confusion (rows: majority class)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def layer_weight_report(trainers: Sequence[Trainer]) -> dict[str, float]:
    """Each mixed layer's softmax weight now (the mean over a search trial's splits)."""
    weights = [layer_weights(t.head) for t in trainers]
    return {f"{C.LAYER_WEIGHT_PREFIX}{modality}_{i}": float(np.mean([w[modality][i] for w in weights]))
            for modality, values in weights[0].items() for i in range(len(values))}


def _layer_weights_png(weights: Mapping[str, Sequence[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(weights), figsize=(5 * len(weights), 3.5), squeeze=False)
    for ax, (modality, values) in zip(axes[0], weights.items(), strict=True):
        ax.bar(range(len(values)), values)
        ax.axhline(1 / len(values), color="grey", linestyle=":", label="uniform")
        ax.set(title=f"{modality} encoder", xlabel="layer (0 = embeddings)", ylabel="softmax weight")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _final_report(result: FitResult, base: Mapping[str, Any]) -> tuple[dict[str, Any], tune.Checkpoint, Any]:
    final = {**base, "epoch": result.selected_epoch, C.SELECTED_PREFIX + "epoch": result.selected_epoch,
             **{C.SELECTED_PREFIX + k: float(v) for k, v in result.metrics.items() if k != "epoch"},
             **{C.BEST_PREFIX + k: v for k, v in best_values(result.history).items()}}
    if torch.cuda.is_available():
        final[C.GPU_PREFIX + "peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    tmp = tempfile.TemporaryDirectory()
    out = Path(tmp.name)
    torch.save({"config": result.config.to_flat(), "state_dict": result.state_dict}, out / "head.pt")
    result.predictions.to_frame().to_json(out / "predictions.jsonl", orient="records", lines=True)
    (out / "history.json").write_text(json.dumps(result.history, indent=1))
    (out / "final.json").write_text(json.dumps(final))
    _confusion_png(result, out / "confusion_matrix.png")
    if weights := layer_weights(result.state_dict):  # a head mixing encoder layers: what it learned
        (out / C.LAYER_WEIGHTS_FILE).write_text(json.dumps({"epoch": result.selected_epoch, **weights}, indent=1))
        _layer_weights_png(weights, out / "layer_weights.png")
    return final, tune.Checkpoint.from_directory(tmp.name), tmp


def train_trial(config: dict[str, Any], data: FeatureTable, settings: Mapping[str, Any]) -> None:
    """Function trainable; ``data`` and ``settings`` are bound by ``tune.with_parameters``.

    ``settings['splits']``, when given, lists the ``(valid_fold, excluded_folds)`` splits of a search
    trial; otherwise the trial validates on ``config['fold']``.
    """
    torch.set_num_threads(max(1, int(settings.get("cpus_per_trial", 1))))  # no oversubscription
    done = tune.get_checkpoint()
    if done is not None:  # finished before the driver was interrupted: report it again, don't retrain
        with done.as_directory() as path:
            final = json.loads((Path(path) / "final.json").read_text())
        tune.report(final, checkpoint=done)
        return
    run_config = RunConfig.from_flat(run_config_keys(config))
    search = "splits" in settings
    splits: list[Split] = settings["splits"] if search else [(int(config[C.FOLD]), ())]
    trainers = [Trainer(run_config, *data.split(valid, exclude=exclude)) for valid, exclude in splits]
    node = {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address()}
    # what was actually trained and evaluated on (the hard arm has already dropped its ties)
    base = {**node, C.N_TRAIN: sum(len(t.train_rows) for t in trainers),
            C.N_VALID: sum(len(t.valid_rows) for t in trainers)}
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    metric = settings.get("metric", run_config.select_metric)
    mode = metric_mode(metric)
    score: float | None = None
    while not trainers[0].done:
        per_split = [t.run_epoch() for t in trainers]  # lockstep: one epoch of every split, then report
        _inject_failure(settings, config)
        mean = {k: float(np.mean([m[k] for m in per_split])) for k in per_split[0] if k != "epoch"}
        report = {**base, "epoch": trainers[0].epoch, **epoch_report(mean), **layer_weight_report(trainers)}
        if search:
            value = mean[metric]
            score = value if score is None else (max(score, value) if mode == "max" else min(score, value))
            report["score"] = score
        tune.report(report)
    if not search:
        final, checkpoint, tmp = _final_report(trainers[0].result(), base)
        with tmp:
            tune.report(final, checkpoint=checkpoint)

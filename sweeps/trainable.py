"""The Tune trainable: one trial = one run configuration trained on one or more splits (DESIGN §6).

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

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray import tune

from erc import contract as C
from erc.config import RunConfig
from erc.inputs import InputTable
from erc.layers import layer_weights
from erc.metrics import is_better, metric_mode
from erc.protocol import select_rows
from erc.table import FeatureTable
from erc.trainer import FitResult, Trainer
from sweeps.naming import TrialLabels, run_config_keys
from sweeps.settings import fail_once_spec

# (validation fold, folds kept out of training too)
Split = tuple[int, tuple[int, ...]]


class InjectedFailure(RuntimeError):
    """Raised by the fault-injection switch (``ERC_FAIL_ONCE``) so tests can exercise retries."""


def _inject_failure(settings: Mapping[str, Any], config: Mapping[str, Any], epoch: int, reported: bool) -> None:
    """Fail the first attempt of grid trials whose run name contains the ``ERC_FAIL_ONCE`` pattern.

    ``pattern``: during epoch 1, before it is reported (the retry starts afresh). ``pattern@k``: right
    after epoch k has been reported (and, in finetune mode, checkpointed), so the retry resumes at k + 1.
    The "already failed" marker is a file per trial id in a directory the driver chose (on one
    machine or a shared filesystem: the switch is for tests).
    """
    spec = fail_once_spec(settings.get("fail_once"))
    if spec is None or C.FOLD not in config:
        return
    pattern, at = spec
    if (epoch, reported) != ((1, False) if at is None else (at, True)):
        return
    name = TrialLabels(with_seed=True).name(config)
    if pattern not in name:
        return
    marker = Path(settings["fail_once_dir"]) / tune.get_context().get_trial_id()
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("1")
        raise InjectedFailure(f"injected failure (ERC_FAIL_ONCE={settings['fail_once']!r}) in {name} "
                              f"after epoch {epoch}")


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


FINAL_FILE, STATE_FILE = "final.json", "state.pt"  # a finished trial's summary; a running trial's state


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


def _final_report(result: FitResult, base: Mapping[str, Any], model_file: str
                  ) -> tuple[dict[str, Any], tune.Checkpoint, Any]:
    final = {**base, "epoch": result.selected_epoch, C.SELECTED_PREFIX + "epoch": result.selected_epoch,
             **{C.SELECTED_PREFIX + k: float(v) for k, v in result.metrics.items() if k != "epoch"},
             **{C.BEST_PREFIX + k: v for k, v in best_values(result.history).items()}}
    final.update(_gpu_memory())
    tmp = tempfile.TemporaryDirectory()
    out = Path(tmp.name)
    torch.save({"config": result.config.to_flat(), "state_dict": result.state_dict}, out / model_file)
    result.predictions.to_frame().to_json(out / "predictions.jsonl", orient="records", lines=True)
    (out / "history.json").write_text(json.dumps(result.history, indent=1))
    (out / FINAL_FILE).write_text(json.dumps(final))
    _confusion_png(result, out / "confusion_matrix.png")
    if weights := layer_weights(result.state_dict):  # a head mixing encoder layers: what it learned
        (out / C.LAYER_WEIGHTS_FILE).write_text(json.dumps({"epoch": result.selected_epoch, **weights}, indent=1))
        _layer_weights_png(weights, out / "layer_weights.png")
    return final, tune.Checkpoint.from_directory(tmp.name), tmp


def _gpu_memory() -> dict[str, float]:
    if not torch.cuda.is_available():
        return {}
    return {C.GPU_PREFIX + "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20}


def make_trainers(run_config: RunConfig, data: FeatureTable | InputTable, splits: Sequence[Split], settings: Mapping[str, Any]
                  ) -> list[Trainer]:
    """One trainer per split: heads on cached vectors, or (``settings['mode'] == 'finetune'``) encoders
    loaded from ``settings['audio_encoder']`` / ``['text_encoder']`` and trained with the head."""
    if settings.get("mode", "cached") == "finetune":
        from erc.finetune import FinetuneTrainer

        return [FinetuneTrainer(run_config, *data.split(valid, exclude=exclude),  # type: ignore[arg-type]
                                audio_encoder=settings["audio_encoder"], text_encoder=settings["text_encoder"])
                for valid, exclude in splits]
    return [Trainer(run_config, *data.split(valid, exclude=exclude)) for valid, exclude in splits]


def _state_checkpoint(trainers: Sequence[Trainer], score: float | None) -> tuple[tune.Checkpoint, Any]:
    tmp = tempfile.TemporaryDirectory()
    torch.save({"trainers": [t.state_dict() for t in trainers], "score": score}, Path(tmp.name) / STATE_FILE)
    return tune.Checkpoint.from_directory(tmp.name), tmp


def train_trial(config: dict[str, Any], data: FeatureTable | InputTable, settings: Mapping[str, Any]) -> None:
    """Function trainable; ``data`` (a FeatureTable, or an InputTable in finetune mode) and ``settings``
    are bound by ``tune.with_parameters``.

    ``settings['splits']``, when given, lists the ``(valid_fold, excluded_folds)`` splits of a search
    trial; otherwise the trial validates on ``config['fold']``. With ``settings['epoch_checkpoints']``
    a grid trial checkpoints its whole state after every epoch and a retried or restored trial
    continues from there: no epoch runs (or is reported) twice.
    """
    torch.set_num_threads(max(1, int(settings.get("cpus_per_trial", 1))))  # no oversubscription
    resume: dict[str, Any] | None = None
    latest = tune.get_checkpoint()
    if latest is not None:
        with latest.as_directory() as path:
            if (Path(path) / FINAL_FILE).exists():
                # finished before the driver was interrupted: report it again, don't retrain
                final = json.loads((Path(path) / FINAL_FILE).read_text())
                tune.report(final, checkpoint=latest)
                return
            resume = torch.load(Path(path) / STATE_FILE, map_location="cpu", weights_only=False)
    run_config = RunConfig.from_flat(run_config_keys(config))
    search = "splits" in settings
    splits: list[Split] = settings["splits"] if search else [(int(config[C.FOLD]), ())]
    data = select_rows(data, run_config.protocol.data_selection, settings.get("paper_excluded"))
    trainers = make_trainers(run_config, data, splits, settings)
    score: float | None = None
    if resume is not None:
        for trainer, state in zip(trainers, resume["trainers"], strict=True):
            trainer.load_state_dict(state)
        score = resume["score"]
    node = {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address()}
    # what was actually trained and evaluated on (the hard arm has already dropped its ties)
    base = {**node, C.N_TRAIN: sum(len(t.train_rows) for t in trainers),
            C.N_VALID: sum(len(t.valid_rows) for t in trainers)}
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    metric = settings.get("metric", run_config.select_metric)
    mode = metric_mode(metric)
    checkpoints = bool(settings.get("epoch_checkpoints")) and not search
    while not all(t.done for t in trainers):
        # lockstep: one epoch of every split, then report (a split stopped early keeps its last epoch)
        per_split = [t.history[-1] if t.done else t.run_epoch() for t in trainers]
        epoch = max(t.epoch for t in trainers)
        _inject_failure(settings, config, epoch, reported=False)
        mean = {k: float(np.mean([m[k] for m in per_split])) for k in per_split[0] if k != "epoch"}
        report = {**base, "epoch": epoch, **epoch_report(mean), **_gpu_memory(), **layer_weight_report(trainers)}
        if search:
            value = mean[metric]
            score = value if score is None else (max(score, value) if mode == "max" else min(score, value))
            report["score"] = score
        if checkpoints:
            checkpoint, tmp = _state_checkpoint(trainers, score)
            with tmp:
                tune.report(report, checkpoint=checkpoint)
        else:
            tune.report(report)
        _inject_failure(settings, config, epoch, reported=True)
    if not search:
        model_file = Path(C.MODEL_CHECKPOINT if settings.get("mode") == "finetune" else C.HEAD_CHECKPOINT).name
        final, checkpoint, tmp = _final_report(trainers[0].result(), base, model_file)
        with tmp:
            tune.report(final, checkpoint=checkpoint)

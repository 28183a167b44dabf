"""The Tune trainable: one trial = one ``erc.train.fit`` on one fold (DESIGN §6).

The feature arrays arrive once through Ray's object store (``tune.with_parameters``); the trial
only slices them by fold. Every epoch's metrics go to Tune (which forwards them to MLflow on the
driver); the final report carries the selected epoch's metrics and a checkpoint directory with
the head, the validation predictions and the confusion matrix.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray import tune

from erc.train import StopTraining, fit, split_fold

# Keys of a trial's config that describe the trial rather than the fit.
TRIAL_KEYS = ("fold",)


class InjectedFailure(RuntimeError):
    """Raised by the fault-injection switch (``--fail-once``) so tests can exercise retries."""


def _inject_failure(settings: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """Fail the first attempt of trials whose run name contains ``settings['fail_once']``.

    The "already failed" marker is a file per trial id in a directory the driver chose (on one
    machine or a shared filesystem: the switch is for tests).
    """
    pattern = settings.get("fail_once")
    if not pattern or pattern not in trial_name(config, with_seed=True):
        return
    marker = Path(settings["fail_once_dir"]) / tune.get_context().get_trial_id()
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("1")
        raise InjectedFailure(f"injected failure (--fail-once {pattern!r}) in {trial_name(config)}")


def trial_name(config: Mapping[str, Any], with_seed: bool = False) -> str:
    name = f"fold{config['fold']}-{config['fusion']}-{config['labels']}"
    return name + f"-seed{config['seed']}" if with_seed else name


def fit_config(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in TRIAL_KEYS}


def full_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """What a trial's MLflow params record: its fold and the fully resolved fit config."""
    from erc.train import resolve_config

    trial = {k: config[k] for k in TRIAL_KEYS if k in config}
    return {**trial, **resolve_config(fit_config(config))}


def _confusion_png(predictions, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    from erc.labels import EMOTIONS

    rated = predictions[predictions.target >= 0]
    pred = np.stack(rated.logits.to_numpy()).argmax(1)
    fig, ax = plt.subplots(figsize=(6, 5))
    ConfusionMatrixDisplay.from_predictions(rated.target, pred, labels=list(range(len(EMOTIONS))),
                                            display_labels=EMOTIONS, normalize="true", values_format=".2f",
                                            ax=ax, colorbar=False, xticks_rotation=45)
    ax.set_title("validation confusion (rows: majority class)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train_trial(config: dict[str, Any], data: Mapping[str, np.ndarray], settings: Mapping[str, Any]) -> None:
    """Function trainable; ``data`` and ``settings`` are bound by ``tune.with_parameters``."""
    torch.set_num_threads(max(1, int(settings.get("cpus_per_trial", 1))))  # no oversubscription
    done = tune.get_checkpoint()
    if done is not None:  # finished before the driver was interrupted: report it again, don't retrain
        with done.as_directory() as path:
            final = json.loads((Path(path) / "final.json").read_text())
        tune.report(final, checkpoint=done)
        return
    node = {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address()}
    train, valid = split_fold(data, int(config["fold"]))
    sizes = {"n_train": len(train["segment_id"]), "n_valid": len(valid["segment_id"])}
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()

    def on_epoch(epoch: int, metrics: Mapping[str, float]) -> None:
        _inject_failure(settings, config)
        report = {"epoch": epoch, **node, **sizes}
        for key, value in metrics.items():
            if key == "epoch":
                continue
            report["train/loss" if key == "train_loss" else f"valid/{key}"] = float(value)
        tune.report(report)

    result = fit(fit_config(config), train, valid, on_epoch=on_epoch)
    if result.stopped_early:
        return
    final = {"epoch": result.selected_epoch, **node, **sizes, "selected/epoch": result.selected_epoch,
             **{f"selected/{k}": float(v) for k, v in result.metrics.items() if k != "epoch"}}
    if torch.cuda.is_available():
        final["gpu/peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        torch.save({"config": result.config, "state_dict": result.state_dict}, out / "head.pt")
        result.predictions.to_json(out / "predictions.jsonl", orient="records", lines=True)
        (out / "history.json").write_text(json.dumps(result.history, indent=1))
        (out / "final.json").write_text(json.dumps(final))
        _confusion_png(result.predictions, out / "confusion_matrix.png")
        tune.report(final, checkpoint=tune.Checkpoint.from_directory(tmp))


__all__ = ["InjectedFailure", "StopTraining", "train_trial", "trial_name"]


def search_trial(config: dict[str, Any], data: Mapping[str, np.ndarray], settings: Mapping[str, Any]) -> None:
    """A hyper-parameter search trial: one config fitted on one or more splits, in lockstep.

    ``settings['splits']`` holds ``(name, train_index, valid_index)`` triples made on the driver.
    Each epoch reports the mean validation metrics over the splits and ``score``, the running best
    of the mean ``settings['metric']`` — what OptunaSearch and ASHA read.
    """
    import queue
    import threading

    torch.set_num_threads(max(1, int(settings.get("cpus_per_trial", 1))))
    metric, mode = settings["metric"], settings["mode"]
    splits = settings["splits"]
    cfg = fit_config(config)
    node = {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address()}
    sizes = {"n_train": sum(len(t) for _, t, _ in splits), "n_valid": sum(len(v) for _, _, v in splits)}
    epochs: dict[int, dict[str, Mapping[str, float]]] = {}
    lock = threading.Lock()
    ready: queue.Queue = queue.Queue()

    def on_epoch_of(name: str):
        def on_epoch(epoch: int, metrics: Mapping[str, float]) -> None:
            with lock:
                epochs.setdefault(epoch, {})[name] = dict(metrics)
                if len(epochs[epoch]) == len(splits):
                    ready.put(epoch)

        return on_epoch

    def run(name: str, train_idx: np.ndarray, valid_idx: np.ndarray) -> None:
        try:
            fit(cfg, {k: v[train_idx] for k, v in data.items()}, {k: v[valid_idx] for k, v in data.items()},
                on_epoch=on_epoch_of(name))
        except Exception as err:  # noqa: BLE001 -- re-raised on the trial thread by the loop below
            ready.put(err)

    # Folds train in threads (torch releases the GIL) so each epoch's mean can be reported to
    # the scheduler as one result; the reporting itself stays on the trial's own thread.
    threads = [threading.Thread(target=run, args=split, daemon=True) for split in splits]
    for thread in threads:
        thread.start()
    best: float | None = None
    for _ in range(int(resolve_epochs(cfg))):
        item = ready.get()
        if isinstance(item, BaseException):
            raise item
        per_split = epochs.pop(item)
        mean = {k: float(np.mean([m[k] for m in per_split.values()])) for k in next(iter(per_split.values()))
                if k != "epoch"}
        value = mean[metric]
        best = value if best is None else (max(best, value) if mode == "max" else min(best, value))
        tune.report({"epoch": item, **node, **sizes, "score": best,
                     **{("train/loss" if k == "train_loss" else f"valid/{k}"): v for k, v in mean.items()}})
    for thread in threads:
        thread.join()


def resolve_epochs(cfg: Mapping[str, Any]) -> int:
    from erc.train import resolve_config

    return resolve_config(cfg)["epochs"]

"""A trial's checkpoints: its resume state after every epoch, and its final directory.

* state (``state.pt``): every trainer's whole state and the search score, reported with each epoch when
  the trial checkpoints every epoch; a retried or restored trial loads it and continues;
* final: the model file (``head.pt`` cached, ``model.pt`` finetune), predictions, history, the final
  result (``final.json``: a finished trial restored by ``Tuner.restore`` reports it again instead of
  retraining) and its plots. The MLflow callback logs the directory as the trial's artifacts.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from ray import tune

from erc import contract as C
from erc.layers import layer_weights
from erc.trainer import FitResult, Trainer
from erc.vocab import EMOTIONS
from sweeps.plots import confusion_png, layer_weights_png


@dataclass(frozen=True)
class Latest:
    """What the trial's latest checkpoint holds: a finished trial's final result, or a running one's state."""

    final: dict[str, Any] | None = None
    state: dict[str, Any] | None = None


def latest() -> Latest | None:
    """The trial's latest checkpoint (a retry or a restored trial), read; None for a fresh trial."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as path:
        if (Path(path) / C.FINAL_FILE).exists():
            return Latest(final=json.loads((Path(path) / C.FINAL_FILE).read_text()))
        return Latest(state=torch.load(Path(path) / C.STATE_FILE, map_location="cpu", weights_only=False))


def state_checkpoint(trainers: Sequence[Trainer], score: float | None) -> tuple[tune.Checkpoint, Any]:
    """The resume state; report it inside ``with`` the returned temporary directory."""
    tmp = tempfile.TemporaryDirectory()
    torch.save({"trainers": [t.state_dict() for t in trainers], "score": score}, Path(tmp.name) / C.STATE_FILE)
    return tune.Checkpoint.from_directory(tmp.name), tmp


def final_checkpoint(result: FitResult, final: Mapping[str, Any], model_file: str,
                     split: Mapping[str, Sequence[str]] | None = None,
                     classes: Sequence[str] = EMOTIONS) -> tuple[tune.Checkpoint, Any]:
    """The finished trial's directory; report it inside ``with`` the returned temporary directory.

    ``split``: ``split.json`` (train/dev/test segment ids), logged at the run's artifact root;
    ``classes``: the corpus's class names (the confusion matrix's labels)."""
    tmp = tempfile.TemporaryDirectory()
    out = Path(tmp.name)
    torch.save({"config": result.config.to_flat(), "state_dict": result.state_dict}, out / model_file)
    result.predictions.to_frame().to_json(out / C.PREDICTIONS_FILE, orient="records", lines=True)
    (out / C.HISTORY_FILE).write_text(json.dumps(result.history, indent=1))
    if result.dev_history:
        (out / C.DEV_HISTORY_FILE).write_text(json.dumps(result.dev_history, indent=1))
    if split is not None:
        (out / C.SPLIT_FILE).write_text(json.dumps(dict(split)))
    (out / C.FINAL_FILE).write_text(json.dumps(final))
    confusion_png(result, out / C.CONFUSION_PLOT, classes)
    if weights := layer_weights(result.state_dict):  # a head mixing encoder layers: what it learned
        (out / C.LAYER_WEIGHTS_FILE).write_text(json.dumps({"epoch": result.selected_epoch, **weights}, indent=1))
        layer_weights_png(weights, out / C.LAYER_WEIGHTS_PLOT)
    return tune.Checkpoint.from_directory(tmp.name), tmp

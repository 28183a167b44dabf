"""sweeps/checkpoints.py: what a finished trial's directory holds and what a running trial saves.

Reading a checkpoint back inside a trial (``latest``) needs a Tune session: tests/sweeps/test_trainable.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from erc import contract as C
from erc.config import RunConfig
from erc.trainer import Trainer
from sweeps.checkpoints import final_checkpoint, state_checkpoint
from sweeps.results import final_report
from tests.synthetic import synthetic_features


def _trainer() -> Trainer:
    table = synthetic_features(n=200, seed=0)
    return Trainer(RunConfig.from_flat({C.FUSION: "concat", C.LABELS: "soft", "epochs": 2}), *table.split(0))


def test_a_finished_trial_keeps_model_predictions_history_result_and_plots(one_torch_thread):
    trainer = _trainer()
    while not trainer.done:
        trainer.run_epoch()
    result = trainer.result()
    final = final_report(result, {})
    checkpoint, tmp = final_checkpoint(result, final, Path(C.HEAD_CHECKPOINT).name)
    with tmp, checkpoint.as_directory() as path:
        out = Path(path)
        assert {p.name for p in out.iterdir()} == {Path(C.HEAD_CHECKPOINT).name, C.PREDICTIONS_FILE,
                                                    C.HISTORY_FILE, C.FINAL_FILE, C.CONFUSION_PLOT}
        assert json.loads((out / C.FINAL_FILE).read_text()) == final
        assert json.loads((out / C.HISTORY_FILE).read_text()) == result.history
        saved = torch.load(out / Path(C.HEAD_CHECKPOINT).name, weights_only=False)
        assert saved["config"] == result.config.to_flat()
    assert not Path(tmp.name).exists()


def test_the_state_of_a_running_trial_restores_its_trainers(one_torch_thread):
    trainer = _trainer()
    trainer.run_epoch()
    checkpoint, tmp = state_checkpoint([trainer], 0.25)
    with tmp, checkpoint.as_directory() as path:
        state = torch.load(Path(path) / C.STATE_FILE, weights_only=False)
    assert state["score"] == 0.25
    again = _trainer()
    again.load_state_dict(state["trainers"][0])
    assert again.epoch == trainer.epoch == 1
    assert again.run_epoch() == trainer.run_epoch()  # continues exactly where it stopped

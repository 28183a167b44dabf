"""erc/optim.py: the optimisation settings, importable before torch; the optimiser, schedule and stopping."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from erc.optim import EarlyStopping, OptimConfig, autocast, make_optimizer, make_scheduler
from tests.sweep_helpers import REPO


def test_the_config_imports_without_torch():
    # entry points read OptimConfig's defaults (--epochs) and erc.protocol reads its fields before any
    # training: importing it must not cost torch's start-up
    code = ("import json, sys; from erc.optim import OptimConfig; from erc.protocol import check_cached; "
            "check_cached({'lr': 0.1}); "
            "print(json.dumps([OptimConfig().epochs, sorted(m for m in sys.modules if m.split('.')[0] == 'torch')]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    epochs, torch_modules = json.loads(proc.stdout)
    assert epochs == OptimConfig().epochs and torch_modules == []


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"batch_size": 0}, {"lr": 0.0}, {"weight_decay": -1.0},
                                 {"adam_eps": 0.0}, {"restart_steps": 0}, {"patience": -1}])
def test_impossible_values_are_refused(bad):
    with pytest.raises(ValueError):
        OptimConfig(**bad)


def test_optimizer_and_schedule_follow_the_config():
    generator = torch.Generator().manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(3, generator=generator))
    config = OptimConfig(lr=0.5, weight_decay=0.0, scheduler="cosine_restarts", restart_steps=2, min_lr=0.1)
    optimizer = make_optimizer([weight], config)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["lr"] == 0.5
    scheduler = make_scheduler(optimizer, config)
    lrs = []
    for _ in range(4):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.3) and lrs[1] == pytest.approx(0.5)  # restarted after 2 steps
    assert make_scheduler(optimizer, OptimConfig()) is None


def test_autocast_only_for_bf16():
    x = torch.ones(2, 2)
    with autocast(torch.device("cpu"), "bf16"):
        assert (x @ x).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp32"):
        assert (x @ x).dtype == torch.float32


def test_early_stopping_counts_epochs_without_improvement():
    stopping = EarlyStopping(patience=2)
    for improved, stop in [(True, False), (False, False), (False, True)]:
        stopping.update(improved)
        assert stopping.stop is stop
    again = EarlyStopping(patience=2)
    again.load_state_dict(stopping.state_dict())
    assert again.stop
    off = EarlyStopping(patience=0)
    for _ in range(5):
        off.update(False)
    assert not off.stop

"""erc.config: one flat form, every default once, unknown keys and wrong types rejected."""

from __future__ import annotations

import numpy as np
import pytest

from erc.config import FLAT_KEYS, RunConfig, defaults
from erc.heads import HeadConfig
from erc.losses import LossConfig
from erc.optim import OptimConfig


def test_defaults_come_from_the_component_dataclasses():
    flat = defaults()
    assert set(flat) == set(FLAT_KEYS)
    assert flat["cls_coef"] == LossConfig().cls_coef == 0.7
    assert flat["lr"] == OptimConfig().lr and flat["epochs"] == OptimConfig().epochs
    assert flat["proj_dim"] == HeadConfig.demo().proj_dim and flat["preset"] == "demo"
    assert flat["append_one"] is True and HeadConfig().append_one is True
    assert flat["select_metric"] == "acc"


def test_flat_round_trip_and_presets():
    config = RunConfig.from_flat({"fusion": "concat", "preset": "paper", "depth": 3, "lr": 3e-4})
    assert config.head == HeadConfig.paper(fusion="concat", depth=3)  # an override beats the preset
    assert config.head.dim == 512 and config.optim.lr == 3e-4
    assert RunConfig.from_flat(config.to_flat()) == config
    assert config.replace(labels="hard").loss.labels == "hard"


def test_values_are_coerced_once_and_checked():
    # what Tune and YAML hand over: numpy scalars, ints for floats, integral floats for ints
    config = RunConfig.from_flat({"lr": np.float64(0.01), "cls_coef": 1, "epochs": 4.0, "batch_size": np.int64(8)})
    assert isinstance(config.optim.lr, float) and config.loss.cls_coef == 1.0
    assert config.optim.epochs == 4 and isinstance(config.optim.epochs, int)
    with pytest.raises(KeyError, match="learning_rate"):
        RunConfig.from_flat({"learning_rate": 0.1})
    with pytest.raises(ValueError, match="labels"):
        RunConfig.from_flat({"labels": "onehot"})
    with pytest.raises(ValueError, match="metric"):
        RunConfig.from_flat({"select_metric": "accuracy"})
    with pytest.raises(TypeError, match="epochs"):
        RunConfig.from_flat({"epochs": 2.5})
    with pytest.raises(TypeError, match="append_one"):
        RunConfig.from_flat({"append_one": "yes"})
    with pytest.raises(ValueError, match="multiple of patch"):
        RunConfig.from_flat({"fusion": "outer", "proj_dim": 10, "patch": 4})
    with pytest.raises(ValueError, match="preset"):
        RunConfig.from_flat({"preset": "huge"})
    with pytest.raises(ValueError, match="cls_coef"):
        RunConfig.from_flat({"cls_coef": 1.5})


def test_direction_of_the_selection_metric():
    assert RunConfig.from_flat({"select_metric": "acc"}).select_mode == "max"
    assert RunConfig.from_flat({"select_metric": "loss"}).select_mode == "min"

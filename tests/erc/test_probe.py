"""erc.probe: the GPU packing rule on injected memory figures, and the probe step on a CPU."""

from __future__ import annotations

import pytest
import torch

from erc.config import RunConfig
from erc.losses import multitask_loss
from erc.probe import gpu_fraction, step_memory
from erc.trainer import Trainer
from tests.synthetic import synthetic_features


@pytest.mark.parametrize("peak, total, per_gpu, fraction", [
    (10_000, 80_000, 6, 0.1666),  # 6 × 10 GB ≤ 64 GB (80 % of 80 GB), 7 × 10 GB is not
    (16_000, 80_000, 4, 0.25),  # exactly 4 × 16 = 64 GB fits
    (16_001, 80_000, 3, 0.3333),
    (40_000, 80_000, 1, 1.0),  # two would fit in 80 GB, but not with 20 % kept free
    (500, 80_000, 8, 0.125),  # capped at 8 trials per GPU
    (0, 24_000, 8, 0.125),
])
def test_packing_is_the_largest_that_fits_with_headroom(peak, total, per_gpu, fraction):
    fit = gpu_fraction(peak, total)
    assert fit.per_gpu == per_gpu and fit.fraction == fraction
    assert fit.per_gpu * fit.fraction <= 1.0  # Ray can place them all on one GPU
    assert fit.per_gpu == 1 or fit.per_gpu * peak <= 0.8 * total
    assert str(fit.fraction) in fit.describe()


def test_a_trial_too_big_for_the_gpu_runs_alone_and_says_so():
    fit = gpu_fraction(90_000, 80_000)
    assert fit.per_gpu == 1 and fit.fraction == 1.0 and "may run out of memory" in fit.note
    assert gpu_fraction(30_000, 80_000, headroom=0.0).per_gpu == 2
    with pytest.raises(ValueError):
        gpu_fraction(1_000, 0)


def test_probe_step_builds_and_trains_the_configuration_on_a_cpu():
    train, valid = synthetic_features(n=100).split(0)
    train = train.subset(range(8))
    config = RunConfig.from_flat({"fusion": "outer", "batch_size": 8, "device": "cpu"})
    made = []
    result = step_memory(lambda: made.append(Trainer(config, train, valid)) or made[-1], torch.device("cpu"))
    assert result["rows"] == 8 and result["device"] == "cpu"
    assert result["peak_mb"] is None and result["total_mb"] is None  # memory figures need CUDA
    # the loss is one step's on all the training rows, from the run's own seeded weights
    fresh = Trainer(config, train, valid)
    with torch.no_grad():
        out = fresh.head.train()(fresh.audio, fresh.text)
        expected = multitask_loss(out, fresh.target, fresh.va, config.loss.cls_coef, config.loss.focal_gamma).loss
    assert result["loss"] == pytest.approx(float(expected), rel=1e-6)
    # and the step was taken: exactly one optimiser step moved the weights
    probed = made[0]
    assert probed.optimizer.state_dict()["state"][0]["step"] == 1
    assert not torch.equal(probed.head.proj_audio.weight, fresh.head.proj_audio.weight)

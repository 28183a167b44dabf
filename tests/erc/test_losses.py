"""Multitask loss: class vs probability targets, focal term, MSE, cls_coef weighting, masking."""

from __future__ import annotations

import inspect
import typing

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from erc import vocab
from erc.labels import peakl, soft
from erc.losses import LossConfig, classification_loss, multitask_loss, regression_loss


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 7, generator=g) * 2
    classes = torch.randint(0, 7, (16,), generator=g)
    return logits, classes


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_one_hot_soft_target_equals_class_target(batch, gamma):
    logits, classes = batch
    one_hot = F.one_hot(classes, 7).float()
    torch.testing.assert_close(classification_loss(logits, one_hot, gamma), classification_loss(logits, classes, gamma))
    # and PeakL leaves a unanimous vote one-hot, so it trains like the hard label
    votes = (one_hot * 10).numpy()
    peaked = torch.as_tensor(peakl(soft(votes)), dtype=torch.float32)
    torch.testing.assert_close(classification_loss(logits, peaked, gamma), classification_loss(logits, classes, gamma))


def test_class_and_probability_targets_match_torch_cross_entropy(batch):
    logits, classes = batch
    torch.testing.assert_close(classification_loss(logits, classes), F.cross_entropy(logits, classes))
    probs = torch.softmax(torch.randn(16, 7, generator=torch.Generator().manual_seed(1)), dim=1)
    torch.testing.assert_close(classification_loss(logits, probs), F.cross_entropy(logits, probs))
    torch.testing.assert_close(
        classification_loss(logits, probs, reduction="none"), F.cross_entropy(logits, probs, reduction="none")
    )


def test_focal_gamma_zero_is_cross_entropy_and_gamma_downweights_easy_samples(batch):
    logits, classes = batch
    torch.testing.assert_close(classification_loss(logits, classes, gamma=0.0), F.cross_entropy(logits, classes))
    ce = F.cross_entropy(logits, classes, reduction="none")
    p_t = torch.softmax(logits, 1).gather(1, classes[:, None]).squeeze(1)
    focal = classification_loss(logits, classes, gamma=2.0, reduction="none")
    torch.testing.assert_close(focal, (1 - p_t) ** 2 * ce)  # Lin et al.'s focal loss, per sample
    assert (focal <= ce + 1e-7).all() and (focal < ce).any()


def test_focal_on_soft_targets_uses_expected_target_probability(batch):
    logits, _ = batch
    q = torch.softmax(torch.randn(16, 7, generator=torch.Generator().manual_seed(2)), 1)
    p = torch.softmax(logits, 1)
    expected = (1 - (q * p).sum(1)) ** 1.5 * F.cross_entropy(logits, q, reduction="none")
    torch.testing.assert_close(classification_loss(logits, q, gamma=1.5, reduction="none"), expected)


def test_regression_loss_is_mse_over_valence_and_arousal():
    pred = torch.tensor([[3.0, 2.0], [1.0, 5.0]])
    target = torch.tensor([[2.0, 2.0], [1.0, 3.0]])
    torch.testing.assert_close(regression_loss(pred, target), torch.tensor((1 + 0 + 0 + 4) / 4))
    torch.testing.assert_close(regression_loss(pred, target), F.mse_loss(pred, target))


@pytest.mark.parametrize("cls_coef", [0.7, 0.0, 1.0])
def test_multitask_weighting(batch, cls_coef):
    logits, classes = batch
    va_pred = torch.randn(16, 2, generator=torch.Generator().manual_seed(3)) + 3
    va = torch.rand(16, 2, generator=torch.Generator().manual_seed(4)) * 4 + 1
    out = torch.cat([logits, va_pred], 1)
    parts = multitask_loss(out, classes, va, cls_coef=cls_coef)
    cls, reg = F.cross_entropy(logits, classes), F.mse_loss(va_pred, va)
    torch.testing.assert_close(parts.cls_loss, cls)
    torch.testing.assert_close(parts.reg_loss, reg)
    torch.testing.assert_close(parts.loss, cls_coef * cls + (1 - cls_coef) * reg)


def test_cls_mask_limits_classification_but_not_regression(batch):
    logits, classes = batch
    va = torch.full((16, 2), 3.0)
    out = torch.cat([logits, torch.zeros(16, 2)], 1)
    mask = torch.arange(16) % 3 == 0
    parts = multitask_loss(out, classes, va, cls_mask=mask)
    torch.testing.assert_close(parts.cls_loss, F.cross_entropy(logits[mask], classes[mask]))
    torch.testing.assert_close(parts.reg_loss, torch.tensor(9.0))
    empty = multitask_loss(out, classes, va, cls_mask=torch.zeros(16, dtype=torch.bool))
    assert float(empty.cls_loss) == 0.0 and np.isclose(float(empty.loss), 0.3 * 9.0)


def test_loss_is_differentiable(batch):
    logits, classes = batch
    logits = logits.clone().requires_grad_()
    out = torch.cat([logits, torch.zeros(16, 2)], 1)
    multitask_loss(out, classes, torch.ones(16, 2), gamma=2.0).loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_batch_focal_loss_is_the_focal_weight_of_the_batch_mean_ce(seed, gamma):
    """The paper's focal loss: L = (1 − exp(−CE_mean))^γ · CE_mean, for class and probability targets."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(8, 7, generator=g) * 3
    classes = torch.randint(0, 7, (8,), generator=g)
    probs = torch.softmax(torch.randn(8, 7, generator=g), dim=1)
    for target in (classes, probs):
        ce = F.cross_entropy(logits, target).item()
        expected = (1 - np.exp(-ce)) ** gamma * ce
        got = classification_loss(logits, target, gamma, focal="batch")
        assert got.item() == pytest.approx(expected, rel=1e-6)
        # not the per-sample variant: that weights each sample before averaging
        assert classification_loss(logits, target, gamma).item() != pytest.approx(expected, rel=1e-3)
    assert classification_loss(logits, classes, 0.0, focal="batch").item() == pytest.approx(
        F.cross_entropy(logits, classes).item(), rel=1e-6)
    parts = multitask_loss(torch.cat([logits, torch.randn(8, 2, generator=g)], 1), probs,
                           torch.randn(8, 2, generator=g), 0.7, gamma, focal="batch")
    assert parts.cls_loss.item() == pytest.approx(
        (1 - np.exp(-F.cross_entropy(logits, probs).item())) ** gamma * F.cross_entropy(logits, probs).item(),
        rel=1e-6)
    with pytest.raises(ValueError, match="batch mean"):
        classification_loss(logits, classes, gamma, reduction="none", focal="batch")


def test_the_functions_defaults_are_the_configs():
    defaults = LossConfig()
    for fn, params in ((multitask_loss, {"cls_coef": "cls_coef", "gamma": "focal_gamma", "focal": "focal"}),
                       (classification_loss, {"gamma": "focal_gamma", "focal": "focal"})):
        signature = inspect.signature(fn).parameters
        for param, key in params.items():
            assert signature[param].default == getattr(defaults, key), (fn.__name__, param)
    assert typing.get_args(typing.get_type_hints(LossConfig)["labels"]) == vocab.LABEL_ARMS
    with pytest.raises(ValueError, match="focal variant 'mean'"):
        classification_loss(torch.zeros(2, 7), torch.zeros(2, dtype=torch.long), focal="mean")

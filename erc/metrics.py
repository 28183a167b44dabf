"""Validation metrics (DESIGN §5), computed with torchmetrics.

Evaluation is the same for every label arm so that arms can be paired fold by fold (DESIGN §3):
classification metrics use only the utterances with a unique majority class (``target >= 0``),
scored against that class; the valence/arousal metrics use every utterance.

- ``acc``, ``micro_f1``: accuracy (equal for single-label multiclass, as in the seed's tables).
- ``macro_f1``: mean F1 over the classes that occur in the targets or the predictions
  (torchmetrics ignores classes with tp + fp + fn = 0; scikit-learn's default label set agrees).
- ``auroc``: macro one-vs-rest AUROC over the classes present in the targets; a class absent from
  the fold has no defined AUROC and is left out of the mean (NaN if fewer than 2 classes remain).
- ``ccc_valence``, ``ccc_arousal``: Lin's concordance correlation coefficient as torchmetrics computes
  it, ``2·cov / (var_pred + var_true + (mean_pred - mean_true)²)`` with sample (n-1) moments.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_auroc, multiclass_f1_score
from torchmetrics.functional.regression import concordance_corrcoef

from erc.model import N_CLASSES

METRIC_KEYS = ("acc", "macro_f1", "micro_f1", "auroc", "ccc_valence", "ccc_arousal")
LOSS_KEYS = ("loss", "cls_loss", "reg_loss", "train_loss")
# metrics where lower is better (used to pick the selection mode)
MINIMISE = frozenset(LOSS_KEYS)


def _float(x: Tensor) -> float:
    return float(x.detach().cpu())


def classification_metrics(logits: Tensor | np.ndarray, target: Tensor | np.ndarray) -> dict[str, float]:
    """acc, macro_f1, micro_f1, auroc of (N, 7) ``logits`` against class indices; rows with target -1 skipped."""
    logits, target = torch.as_tensor(logits, dtype=torch.float32), torch.as_tensor(target).long()
    keep = target >= 0
    logits, target = logits[keep], target[keep]
    if target.numel() == 0:
        return {k: math.nan for k in ("acc", "macro_f1", "micro_f1", "auroc")}
    pred = logits.argmax(dim=1)
    out = {
        "acc": _float(multiclass_accuracy(pred, target, N_CLASSES, average="micro")),
        "macro_f1": _float(multiclass_f1_score(pred, target, N_CLASSES, average="macro")),
        "micro_f1": _float(multiclass_f1_score(pred, target, N_CLASSES, average="micro")),
    }
    present = torch.bincount(target, minlength=N_CLASSES) > 0
    if int(present.sum()) < 2:
        out["auroc"] = math.nan
    else:
        with warnings.catch_warnings():
            # torchmetrics scores a class without positives as 0 (with a warning) and would average that
            # in; per-class values, then the mean over the classes present, skip it instead
            warnings.simplefilter("ignore")
            per_class = multiclass_auroc(logits.softmax(dim=1), target, N_CLASSES, average="none")
        out["auroc"] = _float(per_class[present].mean())
    return out


def ccc(pred: Tensor | np.ndarray, target: Tensor | np.ndarray) -> float:
    """Concordance correlation coefficient of two 1-D series (NaN for fewer than 2 values)."""
    pred, target = torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(target, dtype=torch.float64)
    if pred.numel() < 2:
        return math.nan
    with warnings.catch_warnings():
        # torchmetrics warns and returns NaN when the predictions (nearly) do not vary, e.g. a head
        # that has not learned the regression yet; Lin's formula is still defined then (the
        # covariance term vanishes, so CCC ≈ 0), and NaN would break epoch selection and t-tests
        warnings.simplefilter("ignore")
        value = _float(concordance_corrcoef(pred, target))
    if math.isnan(value):
        mp, mt = pred.mean(), target.mean()
        cov = ((pred - mp) * (target - mt)).sum() / (pred.numel() - 1)
        den = pred.var() + target.var() + (mp - mt) ** 2
        value = _float(2 * cov / den) if float(den) > 0 else math.nan
    return value


def regression_metrics(va_pred: Tensor | np.ndarray, va_target: Tensor | np.ndarray) -> dict[str, float]:
    """ccc_valence, ccc_arousal of (N, 2) predictions against (N, 2) ratings."""
    va_pred, va_target = torch.as_tensor(va_pred), torch.as_tensor(va_target)
    return {
        "ccc_valence": ccc(va_pred[:, 0], va_target[:, 0]),
        "ccc_arousal": ccc(va_pred[:, 1], va_target[:, 1]),
    }


def evaluate_outputs(output: Tensor | np.ndarray, target: Tensor | np.ndarray, va_target: Tensor | np.ndarray) -> dict:
    """All non-loss metrics from a head's (N, 9) output, class targets (-1 = tie) and (N, 2) ratings."""
    output = torch.as_tensor(output, dtype=torch.float32)
    return {
        **classification_metrics(output[:, :N_CLASSES], target),
        **regression_metrics(output[:, N_CLASSES:], va_target),
    }


def check_metric(metric: str) -> str:
    """``metric`` if it is one a run reports, else a ValueError listing them."""
    if metric not in METRIC_KEYS + LOSS_KEYS:
        raise ValueError(f"unknown metric {metric!r}; choose from {list(METRIC_KEYS + LOSS_KEYS)}")
    return metric


def metric_mode(metric: str) -> str:
    """'min' for losses, 'max' for every other metric: the one place a metric's direction is decided."""
    return "min" if check_metric(metric) in MINIMISE else "max"


def is_better(value: float, best: float | None, metric: str) -> bool:
    """Strict improvement for the selection metric (min for losses, max otherwise); NaN never wins."""
    if value is None or math.isnan(value):
        return False
    if best is None or math.isnan(best):
        return True
    return value < best if metric_mode(metric) == "min" else value > best

"""Robustness to a missing or noisy modality (DESIGN §14; MultiBench's robustness curves).

After training, a trial evaluates its selected epoch's weights on the held-out rows under
*conditions*, one modality perturbed at a time, and logs ``robust/<condition>/<metric>``:

- ``missing_<m>``: modality ``m``'s input replaced, for every row, by the mean input of the head's
  training rows (cached mode). A standardising head then sees exactly zero for that modality: the
  modality carries no information, and the head's other pathway is all that is left.
- ``noise_<m>_<σ>``: Gaussian noise added to modality ``m``'s input, per feature, with standard
  deviation ``σ`` × that feature's standard deviation over the training rows (``σ`` in
  :data:`NOISE_LEVELS`: 0.5, 1, 2). After a head's standardisation this is N(0, σ²) noise on every
  feature: the same signal-to-noise ratio for both modalities whatever their scales.

The noise comes from one local generator seeded by the trial seed: ``ε`` is drawn once per modality
(audio first) and scaled by each ``σ``, so the levels of one curve share their noise and every arm of a
fold (same seed, same held-out rows) sees the same draw, keeping arms paired.

A head that mixes encoder layers (``weighted``) gets the same treatment per layer: the mean and
standard deviation are each layer's own. A head that reads token sequences (``xattn``) gets it per
position: every frame or token is replaced by, or perturbed with, the per-feature statistics over every
real position of the training rows; the masks stay (padding is never read).

Finetune mode (:meth:`erc.finetune.FinetuneTrainer.robustness`) perturbs the raw inputs instead:
``missing_audio`` is silent audio (zero samples, the same length and mask), ``missing_text`` an
empty transcript (the tokenizer's begin and end tokens only), ``noise_audio_<σ>`` Gaussian noise on
the waveform the encoder reads at ``σ`` × the training waveforms' standard deviation (1 after
wav2vec2's per-utterance normalisation). Token ids have no Gaussian noise, so finetune trials log no
``noise_text_*``.

Pure torch: no Ray, no MLflow, no files.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from erc.config import RunConfig
from erc.contract import (
    MISSING,
    NOISE,
    NOISE_LEVELS,
    Condition,
    condition_name,
    condition_names,
    level_name,
    parse_condition,
)
from erc.heads import BaseHead
from erc.layers import HeadInput, LayerRows, head_input_of
from erc.metrics import validation_metrics
from erc.optim import autocast
from erc.predict import forward
from erc.sequences import SeqBatch, SequenceRows
from erc.table import FeatureTable
from erc.vocab import MODALITIES

# the conditions' names are part of the MLflow contract (robust/<condition>/<metric>): spelled in
# erc.contract, re-exported here beside the code that evaluates them

def feature_stats(x: HeadInput) -> tuple[Tensor, Tensor]:
    """Per-feature mean and (unbiased) std of a head input over its rows: (D,) each, or (L, D) per
    layer for a layer stack."""
    if isinstance(x, LayerRows):
        mean, std = x.layers.mean_std()
        return torch.from_numpy(mean).to(x.device), torch.from_numpy(std).to(x.device)
    if isinstance(x, SequenceRows):  # over every real position, not over padding
        mean, std = x.sequences.mean_std()
        return torch.from_numpy(mean).to(x.device), torch.from_numpy(std).to(x.device)
    x = x.float()
    return x.mean(0), x.std(0)


def _whole(x: HeadInput) -> Tensor | SeqBatch:
    return x[:] if isinstance(x, LayerRows | SequenceRows) else x


def _values(x: Tensor | SeqBatch) -> Tensor:
    """The values a condition changes: a sequence batch's positions (its mask stays), else the tensor."""
    return x.values if isinstance(x, SeqBatch) else x


def _changed(x: Tensor | SeqBatch, values: Tensor) -> Tensor | SeqBatch:
    return x.with_values(values) if isinstance(x, SeqBatch) else values


@torch.no_grad()
def robustness(head: BaseHead, train: FeatureTable, test: FeatureTable, *, config: RunConfig,
               levels: Sequence[float] = NOISE_LEVELS, seed: int | None = None,
               device: torch.device | None = None) -> dict[str, dict[str, float]]:
    """``{condition: metrics}`` of ``head`` on ``test`` (the held-out rows, already as the run
    evaluates them) with one modality missing or noisy; statistics from ``train`` (the head's training
    rows). ``seed`` defaults to ``config.seed``; the head's weights are used as they are."""
    device = device or next(head.parameters()).device
    generator = torch.Generator().manual_seed(config.seed if seed is None else seed)
    inputs = dict(zip(MODALITIES, head_input_of(head, test, config.layers, device), strict=True))
    train_inputs = dict(zip(MODALITIES, head_input_of(head, train, config.layers, device), strict=True))
    stats = {m: feature_stats(train_inputs[m]) for m in MODALITIES}
    whole = {m: _whole(inputs[m]).float() for m in MODALITIES}
    # one draw per modality, audio first, shared by every level
    eps = {m: torch.randn(_values(whole[m]).shape, generator=generator).to(device) for m in MODALITIES}
    majority = torch.as_tensor(test.majority, device=device)
    va = torch.as_tensor(test.va, device=device)

    def score(changed: str, x: Tensor | SeqBatch) -> dict[str, float]:
        audio, text = (x, inputs["text"]) if changed == "audio" else (inputs["audio"], x)
        with autocast(device, config.optim.precision):
            out, _ = forward(head, audio, text)
        return validation_metrics(out.float(), majority, va, config.loss)

    results: dict[str, dict[str, float]] = {}
    for m in MODALITIES:
        mean, _ = stats[m]
        missing = mean.expand_as(_values(whole[m])).contiguous()
        results[condition_name(MISSING, m)] = score(m, _changed(whole[m], missing))
    for m in MODALITIES:
        _, std = stats[m]
        for sigma in levels:
            noisy = _values(whole[m]) + sigma * std * eps[m]
            results[condition_name(NOISE, m, sigma)] = score(m, _changed(whole[m], noisy))
    return results


__all__ = ["MISSING", "NOISE", "NOISE_LEVELS", "Condition", "condition_name", "condition_names",
           "feature_stats", "level_name", "parse_condition", "robustness"]

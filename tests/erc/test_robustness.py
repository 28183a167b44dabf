"""erc.robustness: a missing or noisy modality on the held-out rows, with the selected weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import erc.trainer as trainer_mod
from erc.config import RunConfig
from erc.heads.concat import ConcatHead
from erc.robustness import (
    NOISE_LEVELS,
    condition_names,
    feature_stats,
    parse_condition,
    robustness,
)
from erc.trainer import Trainer
from tests.synthetic import synthetic_features

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class AudioOnly(ConcatHead):
    """A stand-in for an audio-only head: the text input is never read (a constant takes its place)."""

    def embed(self, a, t):
        return super().embed(a, torch.zeros_like(t))


@pytest.fixture(scope="module")
def split():
    return synthetic_features(n=1000, seed=0).split_dev(2)


def _trained(config: RunConfig, split) -> Trainer:
    train, dev, valid = split
    trainer = Trainer(config, train, valid, dev=dev)
    while not trainer.done:
        trainer.run_epoch()
    return trainer


def test_condition_names_round_trip():
    names = condition_names()
    assert names[:2] == ["missing_audio", "missing_text"] and "noise_text_0.5" in names and "noise_audio_1" in names
    assert len(names) == 2 + 2 * len(NOISE_LEVELS) >= 6
    for name in names:
        assert parse_condition(name).name == name
    with pytest.raises(ValueError):
        parse_condition("noise_smell_1")


def test_a_head_that_ignores_text_is_unmoved_by_missing_or_noisy_text(split, monkeypatch):
    monkeypatch.setattr(trainer_mod, "build_head", lambda config, d_a, d_t, **kw: AudioOnly(
        config=config, d_audio=d_a, d_text=d_t, **kw))
    trainer = _trained(RunConfig.from_flat({"fusion": "concat", "epochs": 4}), split)
    result = trainer.result()
    robust = trainer.robustness()
    assert set(robust) == set(condition_names())
    for name in ("missing_text", *(f"noise_text_{s:g}" for s in NOISE_LEVELS)):
        assert robust[name] == {k: v for k, v in result.metrics.items() if k not in ("epoch", "train_loss")}, name
    # the audio it does read matters: without it the head is near chance, with noise it degrades
    assert robust["missing_audio"]["acc"] < result.metrics["acc"] - 0.1
    assert robust["noise_audio_2"]["acc"] < robust["noise_audio_0.5"]["acc"] <= result.metrics["acc"] + 0.02


def test_both_modalities_matter_to_a_fusion_head_and_the_weights_are_the_selected_ones(split):
    config = RunConfig.from_flat({"fusion": "concat", "epochs": 5})
    trainer = _trained(config, split)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    robust = trainer.robustness()
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the current weights are restored
    selected = trainer.result().metrics
    for modality in ("audio", "text"):  # synthetic classes need both modalities
        assert robust[f"missing_{modality}"]["acc"] < selected["acc"] - 0.1
    # zero noise is the selected epoch's numbers exactly: the selected weights are the ones evaluated
    zero = trainer.robustness(levels=(0.0,))
    assert zero["noise_audio_0"] == {k: v for k, v in selected.items() if k not in ("epoch", "train_loss")}
    # seeded by the trial seed: the same numbers again
    assert trainer.robustness() == robust


def test_missing_is_the_training_mean_and_noise_scales_with_the_training_std(split):
    _, _, valid = split
    config = RunConfig.from_flat({"fusion": "concat", "epochs": 1})
    trainer = _trained(config, split)
    seen = []
    head = trainer.head

    original = type(head).forward

    def spy(self, a, t, **kw):
        seen.append((a.clone(), t.clone()))
        return original(self, a, t, **kw)

    type(head).forward = spy
    try:
        robustness(head, trainer.train_rows, trainer.valid_rows, config=config, levels=(1.0, 2.0))
    finally:
        type(head).forward = original
    mean_a, std_a = feature_stats(torch.as_tensor(trainer.train_rows.audio))
    missing_a, _ = seen[0]
    torch.testing.assert_close(missing_a, mean_a.expand_as(missing_a))
    torch.testing.assert_close(seen[1][0], torch.as_tensor(valid.audio))  # missing text leaves audio as it is
    noise1 = seen[2][0] - torch.as_tensor(valid.audio)
    noise2 = seen[3][0] - torch.as_tensor(valid.audio)
    torch.testing.assert_close(noise2, 2 * noise1)  # the levels share one draw
    ratio = (noise1.std(0) / std_a).numpy()
    assert np.all(np.abs(ratio - 1) < 0.3)  # σ = 1 × the per-feature training std


@pytest.mark.parametrize(("fusion", "ignored", "read"), [("audio", "text", "audio"), ("text", "audio", "text")])
def test_a_unimodal_arm_is_unmoved_by_the_modality_it_does_not_read(split, fusion, ignored, read):
    trainer = _trained(RunConfig.from_flat({"fusion": fusion, "epochs": 3}), split)
    selected = {k: v for k, v in trainer.result().metrics.items() if k not in ("epoch", "train_loss")}
    robust = trainer.robustness()
    for name in (f"missing_{ignored}", *(f"noise_{ignored}_{s:g}" for s in NOISE_LEVELS)):
        assert robust[name] == selected, name
    assert robust[f"missing_{read}"]["acc"] < selected["acc"]

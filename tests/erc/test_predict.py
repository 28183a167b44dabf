"""erc.predict: a head's outputs for feature rows, split into their parts, and a head reloaded from its
config and state_dict alone (including checkpoints saved before the heads moved to erc.heads)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from erc.config import RunConfig
from erc.heads import build_head
from erc.predict import Predictions, device_of, forward, load_head, predict
from erc.vocab import N_CLASSES, N_OUTPUTS
from tests.erc.test_layers import layered
from tests.synthetic import synthetic_features


@pytest.fixture(scope="module")
def rows():
    return synthetic_features(n=60, d_audio=6, d_text=8, seed=3)


def _trained_like(config: RunConfig, rows, n_layers=(0, 0)):
    """A head with seeded weights and the rows' statistics, as a Trainer leaves it."""
    from erc.layers import head_inputs

    audio, text = head_inputs(rows, config.layers, torch.device("cpu"))
    head = build_head(config.head, audio.shape[-1], text.shape[-1], layers=config.layers, n_layers=n_layers)
    head.reset_parameters(torch.Generator().manual_seed(0))
    head.fit_normalisation(audio, text, torch.as_tensor(rows.va))
    return head, audio, text


def test_predictions_split_the_output_into_logits_and_ratings(rows):
    output = np.arange(len(rows) * N_OUTPUTS, dtype=np.float32).reshape(len(rows), N_OUTPUTS)
    p = Predictions.of(rows, torch.from_numpy(output))
    assert p.logits.shape == (len(rows), N_CLASSES) and p.va_pred.shape == (len(rows), 2)
    np.testing.assert_array_equal(p.va_pred, output[:, N_CLASSES:])
    np.testing.assert_array_equal(p.output, output)  # the layout round-trips
    frame = p.to_frame()
    assert list(frame.columns) == ["segment_id", "logits", "target", "valence_pred", "arousal_pred", "valence",
                                   "arousal"]
    np.testing.assert_array_equal(frame["arousal_pred"], output[:, -1])
    np.testing.assert_array_equal(frame["valence"], rows.valence)


@pytest.mark.parametrize("fusion", ["concat", "outer"])
def test_forward_in_chunks_is_the_eval_mode_head_in_one_pass(rows, fusion):
    config = RunConfig.from_flat({"fusion": fusion, "dropout": 0.5})
    head, audio, text = _trained_like(config, rows)
    head.train()
    out, emb = forward(head, audio, text, embed=True, chunk=7)
    assert head.training  # the mode is put back
    with torch.no_grad():
        whole = head.eval()(audio, text)
        torch.testing.assert_close(out, whole, rtol=1e-6, atol=1e-6)  # eval: no dropout
        torch.testing.assert_close(emb, head.embed(audio, text), rtol=1e-6, atol=1e-6)
    plain, none = forward(head, audio, text, chunk=7)
    assert none is None
    torch.testing.assert_close(plain, out, rtol=0, atol=0)
    empty, _ = forward(head, audio[:0], text[:0])
    assert empty.shape == (0, N_OUTPUTS)


@pytest.mark.parametrize("fusion", ["concat", "outer"])
def test_a_head_reloads_from_its_flat_config_and_state_dict(rows, fusion):
    config = RunConfig.from_flat({"fusion": fusion, "proj_dim": 8, "patch": 2})
    head, *_ = _trained_like(config, rows)
    reloaded = load_head(config.to_flat(), head.state_dict())
    assert not reloaded.training and type(reloaded) is type(head)
    expected, expected_emb = predict(head, rows, device="cpu", return_embeddings=True)
    got, emb = predict(reloaded, rows, device="cpu", return_embeddings=True)
    np.testing.assert_array_equal(got.output, expected.output)
    np.testing.assert_array_equal(emb, expected_emb)
    assert (got.segment_id == rows.segment_id).all()


def test_a_reloaded_head_reads_the_layers_it_was_trained_on():
    table = layered(synthetic_features(n=60, seed=1))
    config = RunConfig.from_flat({"fusion": "concat", "audio_layer": "weighted", "text_layer": 0})
    head, audio, text = _trained_like(config, table, n_layers=(4, 0))
    with torch.no_grad():
        head.norm.audio_mix.logits.copy_(torch.tensor([0.0, 0.0, 3.0, 0.0]))
    reloaded = load_head(config, head.state_dict())
    assert reloaded.layers == config.layers and reloaded.norm.audio_mix.logits[2] == 3.0
    got, _ = predict(reloaded, table, device="cpu")
    with torch.no_grad():
        np.testing.assert_allclose(got.output, head.eval()(audio[:], text).numpy(), rtol=1e-6, atol=1e-6)
    # the same weights fed the last layer instead predict something else
    other = predict(load_head(config.replace(text_layer="last"), head.state_dict()), table, device="cpu")[0]
    assert not np.allclose(other.output, got.output)


def test_device_names():
    assert device_of("cpu") == torch.device("cpu")
    assert device_of("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")

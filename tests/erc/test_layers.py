"""erc.layers: every encoder layer in the cache, the layer config keys, and heads that read or mix layers."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, RobertaModel, Wav2Vec2Model

import erc.layers
from erc.audio import load_audio
from erc.config import RunConfig
from erc.encoders import build_demo_encoders
from erc.features import build_features, feature_meta
from erc.heads import layer_weights
from erc.layers import LayerConfig, LayerRows, Layers
from erc.predict import load_head, predict
from erc.table import FeatureTable
from erc.trainer import Trainer, fit
from tests.erc.features.forwards import Forwards
from tests.erc.features.test_cache import make_corpus
from tests.synthetic import synthetic_features


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("layers")
    corpus = make_corpus(root / "data")
    audio_dir, text_dir = build_demo_encoders(root / "enc", corpus, seed=0)
    return corpus, audio_dir, text_dir


def _cache_dir(ds):
    from pathlib import Path

    return Path(ds.cache_files[0]["filename"]).parent


def test_layer_keys_are_validated_run_config_keys():
    assert RunConfig().layers == LayerConfig(audio_layer="last", text_layer="last")
    config = RunConfig.from_flat({"audio_layer": 6, "text_layer": "weighted"})
    assert config.layers == LayerConfig(audio_layer=6, text_layer="weighted") and config.layers.needs_stack
    assert RunConfig.from_flat(config.to_flat()) == config
    assert RunConfig.from_flat({"audio_layer": np.int64(-1)}).layers.audio_layer == -1  # a Tune grid value
    for bad in ("middle", 1.5, True, "6"):
        with pytest.raises(TypeError, match="audio_layer"):
            RunConfig.from_flat({"audio_layer": bad})


def test_every_layer_cache_keeps_the_last_layer_vectors_exactly(setup, tmp_path, monkeypatch):
    corpus, audio_dir, text_dir = setup
    last_ds = build_features(corpus, audio_dir, text_dir, tmp_path, batch_seconds=8.0, progress=False)
    all_ds = build_features(corpus, audio_dir, text_dir, tmp_path, batch_seconds=8.0, layers="all", progress=False)
    assert _cache_dir(last_ds) != _cache_dir(all_ds)  # a cache of its own; the last-layer key is unchanged
    last, every = FeatureTable.from_dataset(last_ds), FeatureTable.from_dataset(all_ds)
    assert last.audio_layers is None and last.text_layers is None
    # "last" reads the same float32 vectors, bit for bit
    np.testing.assert_array_equal(every.audio, last.audio)
    np.testing.assert_array_equal(every.text, last.text)
    # demo encoders: 2 transformer layers + the embedding output, stored as float16
    assert every.audio_layers.shape == (10, 3, 64) and every.text_layers.shape == (10, 3, 128)
    assert every.audio_layers.dtype == np.float16 and every.text_layers.dtype == np.float16
    meta = feature_meta(all_ds)
    assert meta["layers"] == "all" and meta["layer_stacks"]["audio"]["dtype"] == "float16"
    # the stack's last layer is the last-layer vector, to float16 precision
    np.testing.assert_allclose(every.audio_layers.layer(-1), last.audio, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(every.text_layers.layer(-1), last.text, rtol=2e-3, atol=2e-3)

    # Independent reference for a middle layer: one utterance alone through the HF models.
    w2v = Wav2Vec2Model.from_pretrained(audio_dir).eval()
    rob = RobertaModel.from_pretrained(text_dir).eval()
    tok = AutoTokenizer.from_pretrained(text_dir)
    for i in (0, 3, 7):
        wave = load_audio(corpus["wav_path"][i], 7.0)
        x = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
        with torch.no_grad():
            audio_ref = w2v(torch.from_numpy(x)[None], output_hidden_states=True).hidden_states[1][0].mean(0)
            text_ref = rob(**tok(corpus["text"][i], return_tensors="pt"), output_hidden_states=True).hidden_states[1]
        np.testing.assert_allclose(every.audio_layers.take([i])[0, 1], audio_ref.numpy(), rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(every.text_layers.take([i])[0, 1], text_ref[0, 0].numpy(), rtol=2e-3, atol=2e-3)

    # A run reading "last" from the every-layer table is the run on the last-layer table, exactly.
    config = RunConfig.from_flat({"fusion": "concat", "epochs": 3, "batch_size": 4, "labels": "soft"})
    a, b = fit(config, *last.split(0)), fit(config, *every.split(0))
    assert a.history == b.history
    np.testing.assert_array_equal(a.predictions.output, b.predictions.output)

    # Reused as it is; a cache that lost a stack its record names is rebuilt.
    calls = Forwards(monkeypatch)
    build_features(corpus, audio_dir, text_dir, tmp_path, layers="all", progress=False)
    assert calls.n == 0
    (_cache_dir(all_ds) / "audio_layers.npy").unlink()
    again = build_features(corpus, audio_dir, text_dir, tmp_path, layers="all", progress=False)
    assert calls.n > 0 and FeatureTable.from_dataset(again).audio_layers.shape == (10, 3, 64)
    with pytest.raises(ValueError, match="layers"):
        build_features(corpus, audio_dir, text_dir, tmp_path, layers="middle", progress=False)


def layered(table: FeatureTable, informative: int = 2, n_layers: int = 4, seed: int = 0) -> FeatureTable:
    """``table`` with an audio stack whose layer ``informative`` is its audio vectors and every other
    layer noise of the same scale (float16, as a cache stores it)."""
    rng = np.random.default_rng(seed)
    stack = rng.standard_normal((len(table), n_layers, table.audio.shape[1])) * table.audio.std()
    stack[:, informative] = table.audio
    text = np.repeat(table.text[:, None], 2, axis=1)  # two identical text layers
    return FeatureTable(**{**table.__dict__, "audio_layers": Layers(stack.astype(np.float16)),
                           "text_layers": Layers(text.astype(np.float16))})


def test_a_weighted_head_learns_where_the_signal_is_and_reloads(tmp_path):
    table = layered(synthetic_features(n=600, seed=0, noise=1.0))
    train, valid = table.split(0)
    # splits are row views of the one stack, never copies of it
    assert train.audio_layers.values is table.audio_layers.values
    config = RunConfig.from_flat({"fusion": "concat", "labels": "soft", "epochs": 12, "lr": 3e-3,
                                  "audio_layer": "weighted", "text_layer": "last"})
    trainer = Trainer(config, train, valid)
    assert isinstance(trainer.audio, LayerRows)  # gathered a batch at a time
    while not trainer.done:
        trainer.run_epoch()
    result = trainer.result()
    weights = layer_weights(result.state_dict)
    assert set(weights) == {"audio"} and sum(weights["audio"]) == pytest.approx(1.0)
    assert erc.layers.layer_weights(result.state_dict) == weights  # the old name still answers
    others = max(w for i, w in enumerate(weights["audio"]) if i != 2)
    assert weights["audio"][2] > 0.35 and weights["audio"][2] > 1.5 * others, weights  # uniform: 0.25
    # reloaded from its config and weights alone, it predicts what it did in training
    head = load_head(config.to_flat(), result.state_dict)
    predictions, _ = predict(head, valid, device="cpu")
    np.testing.assert_allclose(predictions.output, result.predictions.output, rtol=1e-5, atol=1e-5)

    # one chosen layer: the informative one beats a noise layer
    scores = {}
    for index in (2, 0):
        chosen = fit(config.replace(audio_layer=index, epochs=5), train, valid)
        scores[index] = chosen.metrics["ccc_arousal"]
        head = load_head(chosen.config, chosen.state_dict)
        again, _ = predict(head, valid, device="cpu")
        np.testing.assert_allclose(again.output, chosen.predictions.output, rtol=1e-5, atol=1e-5)
    assert scores[2] > scores[0] + 0.2, scores


def test_reading_layers_a_table_lacks_is_a_clear_error():
    table = synthetic_features(n=200, seed=1)
    with pytest.raises(ValueError, match=re.escape("--layers all")):
        Trainer(RunConfig.from_flat({"audio_layer": "weighted"}), *table.split(0))
    with pytest.raises(ValueError, match="layer 7 of a stack of 4"):
        Trainer(RunConfig.from_flat({"audio_layer": 7}), *layered(table).split(0))

"""erc.encoders.models: pooling equals the one-utterance computation of the Hugging Face models (DESIGN §4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import (
    AutoTokenizer,
    RobertaModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
)

from erc.data.demo_encoders import build_demo_encoders
from erc.encoders import AudioEncoder, load_audio_encoder, load_text_encoder

TEXTS = ["오늘 정말 좋아 고마워", "짜증나 힘들어 그냥 집에", "세상에 깜짝 놀랐어", "우리 같이 밥 먹자 내일",
         "그래서 회의 시간 얘기 했어", "무서워 사실은 그런데", "행복해 재밌어 최고야 신나"] * 3


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("enc")
    return build_demo_encoders(out / "demo", TEXTS, seed=0)


def _waves(lengths_s, seed=0):
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(s * 16000)) + 0.05).astype(np.float32) for s in lengths_s]


def _reference_audio(model_dir, wave):
    """Independent computation: the HF model on one unpadded, normalised utterance, plain mean."""
    model = Wav2Vec2Model.from_pretrained(model_dir).eval()
    x = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)  # Wav2Vec2FeatureExtractor's do_normalize
    with torch.no_grad():
        hidden = model(torch.from_numpy(x)[None]).last_hidden_state[0]
    return hidden.mean(0).numpy()


def test_audio_pool_equals_one_utterance_reference(demo):
    audio_dir, _ = demo
    enc = load_audio_encoder(str(audio_dir), "cpu")
    waves = _waves([2.7, 0.6, 5.0, 1.3])
    batched = enc.pool(waves)  # padded to 5 s with an attention mask
    padded = enc.pool(waves, pad_to=7 * 16000)  # everything padded to 7 s
    for i, wave in enumerate(waves):
        ref = _reference_audio(audio_dir, wave)
        np.testing.assert_allclose(batched[i], ref, atol=1e-5)
        np.testing.assert_allclose(padded[i], ref, atol=1e-5)
    assert batched.shape == (4, enc.dim) and batched.dtype == np.float32


def test_text_pool_is_first_token_of_one_text_reference(demo):
    _, text_dir = demo
    enc = load_text_encoder(text_dir, "cpu")
    texts = ["오늘 정말 좋아 고마워 그래서 회의 시간 얘기 했어", "짜증나", "세상에 깜짝"]
    pooled = enc.pool(texts)
    model = RobertaModel.from_pretrained(text_dir).eval()
    tok = AutoTokenizer.from_pretrained(text_dir)
    for i, text in enumerate(texts):
        with torch.no_grad():
            ref = model(**tok(text, return_tensors="pt")).last_hidden_state[0, 0].numpy()
        np.testing.assert_allclose(pooled[i], ref, atol=1e-5)
    assert enc.max_length == 128


def test_group_norm_models_are_not_batched_with_padding():
    # A GroupNorm conv stack normalises over time: padding would change every frame. The encoder
    # must then run utterances one by one, and still agree with the one-utterance computation.
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16,) * 7, feat_extract_norm="group", num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    model = Wav2Vec2Model(config).eval()
    enc = AudioEncoder.from_model(model, Wav2Vec2FeatureExtractor(return_attention_mask=False))
    waves = _waves([0.5, 1.5], seed=1)
    batched = enc.pool(waves)
    for i, wave in enumerate(waves):
        np.testing.assert_allclose(batched[i], enc.pool([wave])[0], atol=1e-6)
        x = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)[None]).last_hidden_state[0].mean(0).numpy()
        np.testing.assert_allclose(batched[i], ref, atol=1e-5)



"""erc.encoders: loading by path, pooling, identities, demo encoders, the offline error (DESIGN §4)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from transformers import (
    AutoFeatureExtractor,
    AutoModel,
    AutoTokenizer,
    RobertaModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
)

from erc.encoders import (
    AudioEncoder,
    EncoderNotFoundError,
    build_demo_encoders,
    encoder_identity,
    load_audio_encoder,
    load_text_encoder,
)

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


def test_demo_dirs_are_complete_hf_model_dirs(demo):
    audio_dir, text_dir = demo
    assert isinstance(AutoModel.from_pretrained(audio_dir), Wav2Vec2Model)
    fe = AutoFeatureExtractor.from_pretrained(audio_dir)
    assert isinstance(fe, Wav2Vec2FeatureExtractor) and fe.return_attention_mask and fe.do_normalize
    assert AutoModel.from_pretrained(audio_dir).config.feat_extract_norm == "layer"
    assert isinstance(AutoModel.from_pretrained(text_dir), RobertaModel)
    tok = AutoTokenizer.from_pretrained(text_dir)
    ids = tok("오늘 정말 좋아")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    # Trained on the transcripts: a frequent word is a single token, not a run of bytes.
    assert len(tok.tokenize(" 좋아")) == 1


def test_demo_build_is_idempotent_and_seeded(demo, tmp_path):
    audio_dir, text_dir = demo
    weights = audio_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert build_demo_encoders(audio_dir.parent, TEXTS, seed=0) == demo
    assert weights.stat().st_mtime_ns == before  # reused, not rewritten
    torch.manual_seed(12345)  # not where a seed-0 build would leave it
    state = torch.random.get_rng_state()
    same = build_demo_encoders(tmp_path / "again", TEXTS, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random numbers are its own
    assert encoder_identity(same[0], "audio") == encoder_identity(audio_dir, "audio")
    other = build_demo_encoders(tmp_path / "other", TEXTS, seed=1)
    assert encoder_identity(other[0], "audio") != encoder_identity(audio_dir, "audio")
    assert encoder_identity(other[1], "text") != encoder_identity(text_dir, "text")


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


def test_saved_model_loads_by_path_and_identity_follows_content(tmp_path):
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16,) * 7, feat_extract_norm="layer", num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2)
    fe = Wav2Vec2FeatureExtractor(return_attention_mask=True)
    torch.manual_seed(3)
    model = Wav2Vec2Model(config).eval()
    model.save_pretrained(tmp_path / "m")
    fe.save_pretrained(tmp_path / "m")

    enc = load_audio_encoder(tmp_path / "m")
    wave = _waves([1.0])
    with torch.no_grad():
        in_memory = AudioEncoder.from_model(model, fe).pool(wave)
    np.testing.assert_allclose(enc.pool(wave), in_memory, atol=1e-6)  # same weights came back

    shutil.copytree(tmp_path / "m", tmp_path / "moved")  # identity is content, not location
    assert load_audio_encoder(tmp_path / "moved").identity == enc.identity
    torch.manual_seed(4)
    Wav2Vec2Model(config).save_pretrained(tmp_path / "moved")  # new weights, same place
    assert load_audio_encoder(tmp_path / "moved").identity != enc.identity


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


def test_missing_model_is_a_clear_offline_error(tmp_path, monkeypatch):
    with pytest.raises(EncoderNotFoundError) as err:
        load_audio_encoder(tmp_path / "no-such-model")
    message = str(err.value)
    assert "no-such-model" in message and "offline" in message and "save_pretrained" in message
    assert "--audio-encoder" in message

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EncoderNotFoundError, match="--text-encoder"):
        load_text_encoder(empty)
    Wav2Vec2Config().save_pretrained(empty)  # a config but no weights: same clear error
    with pytest.raises(EncoderNotFoundError, match="save_pretrained"):
        load_audio_encoder(empty)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a hub id that is not cached: no download attempt
    with pytest.raises(EncoderNotFoundError, match="offline") as err:
        load_text_encoder("erc-sweeps-test/not-a-cached-model")
    assert "save_pretrained" in str(err.value) and "local copy" in str(err.value)

"""erc.encoders.load: loading by path, identities that follow content, the offline error (DESIGN §4)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

from erc.encoders import (
    AudioEncoder,
    EncoderNotFoundError,
    load_audio_encoder,
    load_text_encoder,
    quiet_loading,
)
from tests.erc.encoders.test_models import _waves


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


@pytest.mark.parametrize("before", [True, False])
def test_quiet_loading_turns_transformers_bars_off_for_the_block_and_restores_them(before):
    import transformers.utils.logging as tf_logging

    original = tf_logging.is_progress_bar_enabled()
    (tf_logging.enable_progress_bar if before else tf_logging.disable_progress_bar)()
    try:
        with quiet_loading(True):
            assert not tf_logging.is_progress_bar_enabled()
        assert tf_logging.is_progress_bar_enabled() == before
        with quiet_loading(False):
            assert tf_logging.is_progress_bar_enabled() == before
        assert tf_logging.is_progress_bar_enabled() == before
    finally:
        (tf_logging.enable_progress_bar if original else tf_logging.disable_progress_bar)()

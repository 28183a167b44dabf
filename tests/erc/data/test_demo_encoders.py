"""erc.data.demo_encoders: seeded random encoders saved as complete Hugging Face model directories."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import (
    AutoFeatureExtractor,
    AutoModel,
    AutoTokenizer,
    RobertaConfig,
    RobertaModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
)

from erc.data.demo_encoders import build_demo_encoders, draw_weights_, random_model
from erc.encoders import encoder_identity
from tests.erc.encoders.test_models import TEXTS


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo_encoders(tmp_path_factory.mktemp("enc") / "demo", TEXTS, seed=0)


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


SMALL_AUDIO = Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                             conv_dim=(16,) * 7, conv_bias=True, feat_extract_norm="layer", do_stable_layer_norm=True,
                             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, mask_time_prob=0.05)
SMALL_TEXT = RobertaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=34, type_vocab_size=1, pad_token_id=1)


@pytest.mark.parametrize(("model_class", "config"), [(Wav2Vec2Model, SMALL_AUDIO), (RobertaModel, SMALL_TEXT)])
def test_random_model_draws_every_weight_from_its_own_generator(model_class, config):
    models = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)  # a weight left to the global generator would differ between the two
        state = torch.random.get_rng_state()
        models.append(random_model(model_class, config, seed=7))
        assert torch.equal(torch.random.get_rng_state(), state)
    a, b = (dict(m.state_dict()) for m in models)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    other = random_model(model_class, config, seed=8).state_dict()
    assert not torch.equal(next(iter(other.values())), next(iter(a.values())))
    assert not models[0].training


def test_draw_weights_follows_the_transformers_distributions():
    audio = random_model(Wav2Vec2Model, SMALL_AUDIO, seed=0)
    assert audio.encoder.layers[0].attention.q_proj.weight.std().item() == pytest.approx(0.02, rel=0.15)
    assert torch.all(audio.encoder.layers[0].attention.q_proj.bias == 0)
    assert torch.all(audio.encoder.layer_norm.weight == 1) and torch.all(audio.encoder.layer_norm.bias == 0)
    conv1 = audio.feature_extractor.conv_layers[1].conv  # Kaiming normal, bias uniform ±√(1/fan_in)
    fan_in = conv1.in_channels * conv1.kernel_size[0]
    assert conv1.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.15)
    assert conv1.bias.abs().max() <= (1 / fan_in) ** 0.5 and conv1.bias.std() > 0
    k = (1 / SMALL_AUDIO.conv_dim[-1]) ** 0.5  # feature projection: uniform(-k, k) on weight and bias
    projection = audio.feature_projection.projection
    assert projection.bias.abs().max() <= k and projection.bias.std() > k / 4
    assert 0 <= audio.masked_spec_embed.min() and audio.masked_spec_embed.max() <= 1
    conv = audio.encoder.pos_conv_embed.conv  # weight-normed: drawn so that the conv's weight is v itself
    torch.testing.assert_close(conv.weight, conv.parametrizations.weight.original1)
    assert conv.parametrizations.weight.original1.std().item() == pytest.approx(
        2 * (1 / (SMALL_AUDIO.num_conv_pos_embeddings * SMALL_AUDIO.hidden_size)) ** 0.5, rel=0.15)
    text = random_model(RobertaModel, SMALL_TEXT, seed=0)
    assert torch.all(text.embeddings.word_embeddings.weight[SMALL_TEXT.pad_token_id] == 0)
    assert text.embeddings.word_embeddings.weight.std().item() == pytest.approx(0.02, rel=0.15)
    assert torch.equal(text.embeddings.position_ids[0], torch.arange(SMALL_TEXT.max_position_embeddings))


def test_draw_weights_refuses_a_parameter_it_has_no_rule_for():
    model = nn.Sequential(nn.Linear(3, 3), nn.Bilinear(3, 3, 3))
    with pytest.raises(TypeError, match="no rule for"):
        draw_weights_(model, generator=torch.Generator().manual_seed(0), std=0.02)

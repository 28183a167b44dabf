"""erc.data.demo_encoders: seeded random encoders saved as complete Hugging Face model directories."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoFeatureExtractor,
    AutoModel,
    AutoTokenizer,
    RobertaModel,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
)

from erc.data.demo_encoders import build_demo_encoders
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

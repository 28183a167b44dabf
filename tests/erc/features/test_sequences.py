"""erc.features.sequences: the last layer's token sequences, built once on the demo corpus (DESIGN §13)."""

from __future__ import annotations

import numpy as np
import pytest

from erc.audio import load_audio
from erc.data import load_corpus
from erc.encoders import load_audio_encoder, load_text_encoder
from erc.features import build_sequences
from erc.sequences import MAX_FRAMES, SequenceRows, masked_mean
from tests.erc.features.forwards import Forwards


@pytest.fixture(scope="module")
def corpus(demo_root):
    return load_corpus(demo_root, verbose=False)


def published(cache) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.is_dir() and p.name.startswith("seq-"))


def test_sequences_are_the_encoders_last_layer_and_are_built_once(corpus, demo_encoders, tmp_path, monkeypatch):
    audio_dir, text_dir = demo_encoders
    seqs, path = build_sequences(corpus, audio_dir, text_dir, tmp_path, progress=False, device="cpu")
    n = len(corpus.utterances)
    assert {m: len(s) for m, s in seqs.items()} == {"audio": n, "text": n}
    assert seqs["audio"].values.dtype == np.float16 and seqs["audio"].lengths.max() <= MAX_FRAMES
    assert (seqs["audio"].lengths >= 1).all() and (seqs["text"].lengths >= 2).all()  # <s> … </s>

    # the stored sequences are what the encoders give one utterance at a time: their mean over the
    # frames is the pooled audio vector, their first token the text vector (up to float16)
    audio, text = load_audio_encoder(audio_dir, "cpu"), load_text_encoder(text_dir, "cpu")
    rows = SequenceRows(seqs["audio"], device="cpu")[slice(0, 3)]
    for i in range(3):
        utt = corpus.utterances.iloc[i]
        wave = load_audio(utt["wav_path"], 7.0, audio.sample_rate)
        pooled = masked_mean(rows.values[i:i + 1], rows.mask[i:i + 1])[0].numpy()
        np.testing.assert_allclose(pooled, audio.pool([wave])[0], atol=2e-2, rtol=2e-2)
        [tokens] = seqs["text"].parts([i])
        np.testing.assert_allclose(tokens[0].astype(np.float32), text.pool([utt["text"]])[0], atol=2e-2, rtol=2e-2)

    calls = Forwards(monkeypatch)
    again, same = build_sequences(corpus, audio_dir, text_dir, tmp_path, progress=False, device="cpu")
    assert calls.n == 0 and same == path and published(tmp_path) == [path.name]  # reused, no encoder ran
    np.testing.assert_array_equal(again["text"].values, seqs["text"].values)


def test_an_interrupted_build_leaves_nothing_half_written(corpus, demo_encoders, tmp_path, monkeypatch):
    audio_dir, text_dir = demo_encoders
    with monkeypatch.context() as patch:
        calls = Forwards(patch, fail_at=3)
        with pytest.raises(RuntimeError, match="simulated crash"):
            build_sequences(corpus, audio_dir, text_dir, tmp_path, progress=False, device="cpu", batch_seconds=4.0)
        assert calls.n == 3
    assert published(tmp_path) == [] and not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())
    seqs, path = build_sequences(corpus, audio_dir, text_dir, tmp_path, progress=False, device="cpu")
    assert published(tmp_path) == [path.name] and len(seqs["audio"]) == len(corpus.utterances)


def test_caps_cut_every_sequence(corpus, demo_encoders, tmp_path):
    seqs, _ = build_sequences(corpus, *demo_encoders, tmp_path, progress=False, device="cpu", max_frames=5,
                              max_tokens=3)
    assert seqs["audio"].lengths.max() == 5 and seqs["text"].lengths.max() == 3

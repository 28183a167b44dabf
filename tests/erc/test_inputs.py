"""erc.inputs: the finetune input cache (waveforms decoded once, token ids), keyed, locked, reused."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import erc.inputs as inputs_mod
from erc.audio import load_audio
from erc.data import load_corpus
from erc.encoders import load_text_encoder
from erc.inputs import build_inputs, input_meta
from erc.protocol import join_lines


@pytest.fixture(scope="module")
def corpus(demo_root):
    return load_corpus(demo_root, verbose=False)


@pytest.fixture(scope="module")
def built(corpus, demo_encoders, tmp_path_factory):
    cache = tmp_path_factory.mktemp("inputs")
    table, path = build_inputs(corpus, *demo_encoders, cache, progress=False)
    return table, path, cache


def test_every_utterance_decoded_once_with_its_token_ids(corpus, demo_encoders, built):
    table, path, _ = built
    u = corpus.utterances
    assert table.segment_id.tolist() == u.segment_id.tolist() and len(table) == len(u)
    np.testing.assert_array_equal(table.majority, u.majority.to_numpy())
    np.testing.assert_array_equal(table.fold, u.fold.to_numpy())
    tokenizer = load_text_encoder(demo_encoders[1], "cpu").tokenizer
    for i in (0, 17, len(u) - 1):
        wave = load_audio(u.wav_path[i])  # mono, 16 kHz, cropped at 7 s
        assert table.wave_len[i] == len(wave) <= 7 * 16000
        np.testing.assert_allclose(table.wave(i), wave, atol=1 / 32767)  # int16 storage
        assert table.token_ids(i).tolist() == tokenizer(u.text[i])["input_ids"]
        assert table.token_ids(i, raw=True).tolist() == tokenizer(join_lines(u.text_raw[i]))["input_ids"]
    assert (table.raw_len >= table.text_len).mean() > 0.9  # raw transcripts keep the transcriber marks
    meta = input_meta(path)
    assert meta["n_utterances"] == len(u) and meta["wave_dtype"] == "int16" and meta["sample_rate"] == 16000
    assert (path / "excluded.csv").is_file()


def test_subsets_share_the_blobs_and_the_table_pickles_as_plain_arrays(built):
    table, _, _ = built
    train, valid = table.split(0)
    assert train.blobs is table.blobs and valid.blobs is table.blobs
    assert len(train) + len(valid) == len(table) and set(valid.fold) == {0}
    np.testing.assert_array_equal(valid.wave(0), table.wave(int(np.flatnonzero(table.fold == 0)[0])))
    clone = pickle.loads(pickle.dumps(table, protocol=5))
    np.testing.assert_array_equal(clone.blobs.waves, table.blobs.waves)
    assert table.nbytes > table.blobs.waves.nbytes


def test_cache_is_reused_and_keyed_on_the_input_settings(corpus, demo_encoders, built, monkeypatch):
    table, path, cache = built

    def no_build(*args, **kwargs):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(inputs_mod, "_write", no_build)
    again, path2 = build_inputs(corpus, *demo_encoders, cache, progress=False)
    assert path2 == path and again.segment_id.tolist() == table.segment_id.tolist()
    monkeypatch.undo()
    half, path3 = build_inputs(corpus, *demo_encoders, cache, wave_dtype="float16", max_seconds=2.0, progress=False)
    assert path3 != path and half.blobs.waves.dtype == np.float16 and half.wave_len.max() <= 32000
    with pytest.raises(ValueError, match="wave_dtype"):
        build_inputs(corpus, *demo_encoders, cache, wave_dtype="int8")  # type: ignore[arg-type]

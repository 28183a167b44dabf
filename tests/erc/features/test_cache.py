"""erc.features.cache: pooled vectors per utterance, cached under a content fingerprint (DESIGN §4)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from transformers import AutoTokenizer, RobertaModel, Wav2Vec2Model

from erc.audio import load_audio
from erc.data.demo_encoders import build_demo_encoders
from erc.encoders import load_audio_encoder
from erc.features import build_features, feature_meta
from erc.table import FeatureTable
from tests.erc.features.forwards import Forwards

# (seconds, rate, channels): short and long (cropped at 7 s), 16 kHz mono and 44.1 kHz stereo.
CLIPS = [(0.4, 16000, 1), (2.5, 44100, 2), (3.0, 16000, 1), (7.6, 16000, 1), (1.7, 44100, 2),
         (4.2, 16000, 1), (0.9, 16000, 1), (2.2, 16000, 1), (5.5, 44100, 2), (1.2, 16000, 1)]
TEXTS = ["오늘 정말 좋아 고마워", "짜증나 힘들어 그냥 집에", "세상에 깜짝 놀랐어", "우리 같이 밥 먹자 내일",
         "그래서 회의 시간 얘기 했어", "무서워 사실은 그런데", "행복해 재밌어 최고야 신나", "싫어 슬퍼 속상해",
         "그냥 학교 친구 봤어", "어머 역겨워 더러워"]


def make_corpus(root: Path, seed: int = 0) -> pd.DataFrame:
    """An utterance table like erc.data.load_corpus's, with real WAV files of varied formats."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, ((seconds, rate, channels), text) in enumerate(zip(CLIPS, TEXTS, strict=True)):
        t = np.arange(int(seconds * rate)) / rate
        voice = 0.3 * np.sin(2 * np.pi * (110 + 20 * i) * t) + 0.05 * rng.standard_normal(len(t))
        data = np.stack([voice, 0.8 * voice], axis=1) if channels == 2 else voice
        path = root / "wav" / f"Sess01_script01_F{i:03d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, data, rate)
        votes = rng.multinomial(10, [0.1, 0.1, 0.1, 0.3, 0.2, 0.1, 0.1])
        top = np.flatnonzero(votes == votes.max())
        rows.append({
            "corpus": "KEMDy19" if i < 6 else "KEMDy20", "session": 1 + i % 5, "segment_id": path.stem,
            "wav_path": str(path), "text": text, "text_raw": text, "votes": votes.tolist(),
            "valence": float(rng.uniform(1, 5)), "arousal": float(rng.uniform(1, 5)),
            "majority": int(top[0]) if len(top) == 1 else -1, "fold": i % 5,
        })
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("feat")
    corpus = make_corpus(root / "data")
    audio_dir, text_dir = build_demo_encoders(root / "enc", corpus, seed=0)
    return corpus, audio_dir, text_dir


def caches(cache: Path) -> list[str]:
    """Directories that look like a published cache (a fingerprint name); hidden temporaries excluded."""
    return sorted(p.name for p in cache.iterdir() if p.is_dir() and re.fullmatch(r"[0-9a-f]{24}", p.name))


def build(corpus, audio, text, cache, **kw):
    return build_features(corpus, audio, text, cache, progress=False, **kw)


def test_rows_columns_and_vectors_equal_one_utterance_computation(setup, tmp_path):
    corpus, audio_dir, text_dir = setup
    # Small batches so that several length buckets (with padding) are exercised.
    ds = build(corpus, audio_dir, text_dir, tmp_path, batch_seconds=8.0)
    assert isinstance(ds, datasets.Dataset) and ds.num_rows == len(corpus)
    table = FeatureTable.from_dataset(ds)
    assert list(table.segment_id) == corpus["segment_id"].tolist()  # corpus order kept
    assert table.audio.shape == (10, 64) and table.audio.dtype == np.float32
    assert table.text.shape == (10, 128) and table.text.dtype == np.float32
    assert table.votes.shape == (10, 7)
    np.testing.assert_array_equal(table.votes, np.array(corpus["votes"].tolist()))
    for col in ("majority", "fold", "session"):
        np.testing.assert_array_equal(getattr(table, col), corpus[col].to_numpy())
    np.testing.assert_allclose(table.valence, corpus["valence"], rtol=1e-6)
    np.testing.assert_allclose(table.arousal, corpus["arousal"], rtol=1e-6)
    assert list(table.corpus) == corpus["corpus"].tolist()

    # Independent reference: each utterance alone through the HF models, no padding, no batching.
    w2v = Wav2Vec2Model.from_pretrained(audio_dir).eval()
    rob = RobertaModel.from_pretrained(text_dir).eval()
    tok = AutoTokenizer.from_pretrained(text_dir)
    for i, row in corpus.iterrows():
        wave = load_audio(row["wav_path"], 7.0)
        x = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
        with torch.no_grad():
            audio_ref = w2v(torch.from_numpy(x)[None]).last_hidden_state[0].mean(0).numpy()
            text_ref = rob(**tok(row["text"], return_tensors="pt")).last_hidden_state[0, 0].numpy()
        np.testing.assert_allclose(table.audio[i], audio_ref, atol=1e-5)
        np.testing.assert_allclose(table.text[i], text_ref, atol=1e-5)
    assert len(wave) <= 7 * 16000
    meta = feature_meta(ds)
    assert meta["n_utterances"] == 10 and meta["max_seconds"] == 7.0


def test_cache_is_reused_without_running_an_encoder(setup, tmp_path, monkeypatch):
    corpus, audio_dir, text_dir = setup
    first = FeatureTable.from_dataset(build(corpus, audio_dir, text_dir, tmp_path))
    calls = Forwards(monkeypatch)
    again = build(corpus, str(audio_dir), str(text_dir), tmp_path)
    assert calls.n == 0
    again = FeatureTable.from_dataset(again)
    for key in ("segment_id", "audio", "text", "votes", "fold", "session"):
        np.testing.assert_array_equal(getattr(again, key), getattr(first, key))
    # Loaded encoder objects with the same identity hit the same cache; batch size is not in the key.
    build(corpus, load_audio_encoder(audio_dir), text_dir, tmp_path, batch_seconds=3.0)
    assert calls.n == 0 and len(caches(tmp_path)) == 1

    # A copy of the corpus elsewhere (same content) is the same corpus.
    moved = corpus.copy()
    shutil.copytree(Path(corpus["wav_path"][0]).parent, tmp_path / "copy")
    moved["wav_path"] = [str(tmp_path / "copy" / Path(p).name) for p in corpus["wav_path"]]
    build(moved, audio_dir, text_dir, tmp_path)
    assert calls.n == 0


def test_a_current_cache_is_read_without_importing_transformers(setup, tmp_path):
    """A new sweep on cached features (a rerun, a search) loads no encoder library: seconds of import."""
    corpus, audio_dir, text_dir = setup
    build(corpus, audio_dir, text_dir, tmp_path / "cache")
    corpus.to_pickle(tmp_path / "corpus.pkl")
    script = textwrap.dedent(f"""
        import sys, pandas as pd
        from erc.features import build_features
        corpus = pd.read_pickle({str(tmp_path / "corpus.pkl")!r})
        ds = build_features(corpus, {str(audio_dir)!r}, {str(text_dir)!r}, {str(tmp_path / "cache")!r})
        print(ds.num_rows, sorted(m for m in ("transformers", "tokenizers") if m in sys.modules))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[-2] == f"{len(corpus)} []"


def test_cache_is_invalidated_by_corpus_encoder_or_audio_settings(setup, tmp_path, monkeypatch):
    corpus, audio_dir, text_dir = setup
    original = FeatureTable.from_dataset(build(corpus, audio_dir, text_dir, tmp_path / "cache"))
    calls = Forwards(monkeypatch)
    seen = set(caches(tmp_path / "cache"))

    def rebuilt(corpus_, audio=audio_dir, text=text_dir, **kw) -> datasets.Dataset:
        before = calls.n
        ds = build(corpus_, audio, text, tmp_path / "cache", **kw)
        new = set(caches(tmp_path / "cache")) - seen
        assert calls.n > before and len(new) == 1, "expected a new cache built by running the encoders"
        seen.update(new)
        return ds

    changed = corpus.copy()
    changed.loc[3, "text"] = "완전히 다른 문장"
    rebuilt(changed)
    relabelled = corpus.copy()
    relabelled.loc[0, "valence"] = 4.9
    assert FeatureTable.from_dataset(rebuilt(relabelled)).valence[0] == pytest.approx(4.9)
    refolded = corpus.copy()
    refolded["fold"] = (refolded["fold"] + 1) % 5
    rebuilt(refolded)

    # Same path, new audio content.
    wav_dir = tmp_path / "wav"
    shutil.copytree(Path(corpus["wav_path"][0]).parent, wav_dir)
    rewritten = corpus.copy()
    rewritten["wav_path"] = [str(wav_dir / Path(p).name) for p in corpus["wav_path"]]
    build(rewritten, audio_dir, text_dir, tmp_path / "cache")  # same content as corpus: a hit
    assert calls.n == 0 or len(seen) > 1
    before = calls.n
    build(rewritten, audio_dir, text_dir, tmp_path / "cache")
    assert calls.n == before
    sf.write(rewritten["wav_path"][2], 0.1 * np.random.default_rng(5).standard_normal(16000), 16000)
    audio = FeatureTable.from_dataset(rebuilt(rewritten)).audio
    assert np.abs(audio[2] - original.audio[2]).max() > 1e-3  # the new sound, not the old vector
    np.testing.assert_allclose(np.delete(audio, 2, 0), np.delete(original.audio, 2, 0), atol=1e-5)

    other_audio, other_text = build_demo_encoders(tmp_path / "enc1", corpus, seed=1)
    rebuilt(corpus, audio=other_audio)
    rebuilt(corpus, text=other_text)
    rebuilt(corpus, max_seconds=2.0)


def test_interrupted_build_leaves_no_complete_looking_cache(setup, tmp_path, monkeypatch):
    corpus, audio_dir, text_dir = setup
    with monkeypatch.context() as patch:
        calls = Forwards(patch, fail_at=3)  # the third batch of audio
        with pytest.raises(RuntimeError, match="simulated crash"):
            build(corpus, audio_dir, text_dir, tmp_path, batch_seconds=8.0)
        assert calls.n == 3
    assert caches(tmp_path) == []  # nothing published, the temporary directory removed

    ds = build(corpus, audio_dir, text_dir, tmp_path)
    assert ds.num_rows == len(corpus)
    [fp] = caches(tmp_path)

    # Leftovers of a build killed hard (no chance to clean up): a partial temporary directory and a
    # half-copied cache directory without its meta.json. Neither may be used; both are replaced.
    complete = tmp_path / fp
    shutil.copytree(complete, tmp_path / f".tmp-{fp}-99999-x")
    (complete / "meta.json").unlink()
    calls = Forwards(monkeypatch)
    ds = build(corpus, audio_dir, text_dir, tmp_path)
    assert calls.n > 0 and ds.num_rows == len(corpus)
    assert caches(tmp_path) == [fp] and (complete / "meta.json").is_file()


def test_killed_process_leaves_no_complete_looking_cache(setup, tmp_path):
    corpus, audio_dir, text_dir = setup
    corpus.to_pickle(tmp_path / "corpus.pkl")
    # A real SIGKILL (no except/finally clause runs) at the worst moment: the Arrow files are fully
    # written, the build record and the publishing rename are not.
    script = textwrap.dedent(f"""
        import os, signal, datasets, pandas as pd
        from erc.features import build_features
        original = datasets.Dataset.save_to_disk
        def save_to_disk(self, *a, **k):
            original(self, *a, **k)
            os.kill(os.getpid(), signal.SIGKILL)
        datasets.Dataset.save_to_disk = save_to_disk
        corpus = pd.read_pickle({str(tmp_path / "corpus.pkl")!r})
        build_features(corpus, {str(audio_dir)!r}, {str(text_dir)!r}, {str(tmp_path / "cache")!r},
                       batch_seconds=8.0, progress=False)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert caches(tmp_path / "cache") == []  # only a hidden temporary directory may remain
    assert any(p.name.startswith(".tmp-") for p in (tmp_path / "cache").iterdir())

    ds = build(corpus, audio_dir, text_dir, tmp_path / "cache")
    assert ds.num_rows == len(corpus)
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "cache").iterdir())


def test_other_corpora_keep_fractional_votes_their_classes_and_their_partition(tmp_path):
    # IEMOCAP's evaluators naming two categories give 1/2 to each: the cache must not round them;
    # MSP-Podcast's official partition travels as the split column; the class names come back with the table
    from erc.data import iemocap, load_corpus, msp_podcast

    for name, writer in (("iemocap", iemocap.write_fixture), ("msp", msp_podcast.write_fixture)):
        corpus = load_corpus(writer(tmp_path / name, seed=0), verbose=False)
        audio_dir, text_dir = build_demo_encoders(tmp_path / f"{name}-enc", corpus, seed=0)
        table = FeatureTable.from_dataset(build(corpus, audio_dir, text_dir, tmp_path / f"{name}-cache"))
        assert table.classes == corpus.classes and table.dimensions == corpus.dimensions
        votes = np.stack([np.asarray(v, dtype=np.float64) for v in corpus.utterances["votes"]])
        np.testing.assert_array_equal(table.votes, votes)
        assert table.votes.shape[1] == len(corpus.classes)
        if name == "iemocap":
            assert table.votes.dtype == np.float64 and np.any(table.votes != np.round(table.votes))
        else:
            assert table.partition.tolist() == corpus.utterances["split"].tolist()

"""erc.data.manifest: a long-format ratings manifest (CSV and JSON lines), bad rows excluded with reasons."""

import numpy as np
import pytest

from erc.data import load_corpus
from erc.data.manifest import write_fixture, write_manifest
from erc.data.synth import write_wav


def rows(utt, group, votes, valence=("", ""), **extra):
    return [{"utterance_id": utt, "wav": f"wav/{utt}.wav", "text": "so nice.", "group": group, "rater": f"r{i}",
             "category": c, "valence": v, "arousal": "3", **extra} for i, (c, v) in enumerate(zip(votes, valence))]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_votes_means_and_group_folds(tmp_path, suffix):
    rng = np.random.default_rng(0)
    table = []
    for g in range(5):
        for k in range(2):
            utt = f"g{g}_{k}"
            write_wav(tmp_path / f"wav/{utt}.wav", rng, 3.0)
            table += rows(utt, f"spk{g}", ["sad", "happy"] if k else ["sad", "sad"], ("2", ""))
    table += rows("bad_valence", "spk0", ["sad", "sad"], ("x", "1"))
    table += rows("no_wav", "spk0", ["sad", "sad"], ("1", "1"))
    write_wav(tmp_path / "wav/bad_valence.wav", rng, 3.0)
    corpus = load_corpus(write_manifest(tmp_path / f"m{suffix}", table), verbose=False)
    assert corpus.classes == ("happy", "sad")
    u = corpus.utterances.set_index("segment_id")
    assert u.loc["g0_0"].votes == [0.0, 2.0] and u.loc["g0_1"].majority == -1
    assert u.loc["g0_0"].valence == 2.0  # blank ratings are none, not zero
    assert dict(zip(corpus.sessions.session, corpus.sessions.fold)) == {g + 1: g for g in range(5)}
    reasons = corpus.excluded.set_index("segment_id").reason
    assert reasons["bad_valence"].startswith("non-numeric rating") and reasons["no_wav"].startswith("missing wav")


def test_split_column_is_an_official_partition(tmp_path):
    rng = np.random.default_rng(0)
    table = []
    for k, split in enumerate(["train", "Development", "test"]):
        write_wav(tmp_path / f"wav/u{k}.wav", rng, 3.0)
        table += rows(f"u{k}", "a", ["sad"], ("2",), split=split)
    corpus = load_corpus(write_manifest(tmp_path / "m.csv", table), verbose=False)
    assert corpus.splits == {"manifest": "official"} and list(corpus.utterances.split) == ["train", "dev", "test"]


def test_generated_manifest(tmp_path):
    corpus = load_corpus(write_fixture(tmp_path, suffix=".jsonl"), verbose=False)
    assert len(corpus.utterances) == 30 and corpus.dimensions == ("valence", "arousal")

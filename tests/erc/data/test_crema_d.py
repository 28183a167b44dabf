"""erc.data.crema_d: a generated CREMA-D in its release layout: voice-only votes, ties, actor folds."""

import math

import numpy as np
import pytest

from erc.data import load_corpus
from erc.data.crema_d import AUDIOVISUAL, FACE, RELEASE, SENTENCES, VOICE, Clip, write_fixture, write_release


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("crema")
    clips = [Clip(f"{1001 + a}_IEO_ANG_HI", {VOICE: [5, 0, 0, 0, 1, 0], FACE: [0, 0, 0, 6, 0, 0],
                                              AUDIOVISUAL: [0, 6, 0, 0, 0, 0]}) for a in range(10)]
    clips += [Clip("1001_TIE_NEU_XX", {VOICE: [3, 0, 0, 0, 3, 1], FACE: [0, 0, 0, 0, 7, 0]}),  # tied emoVote A:N
              Clip("1002_TIE_SAD_LO", {VOICE: [0, 0, 0, 0, 0, 4]}, wav=False),
              Clip("1003_TIE_FEA_LO", {FACE: [0, 0, 4, 0, 0, 0]})]  # no voice-only row
    write_release(root / RELEASE, clips, np.random.default_rng(0))
    return root


def test_voice_only_rows_are_the_votes(root):
    corpus = load_corpus(root, verbose=False)
    assert corpus.classes == ("angry", "disgust", "fear", "happy", "neutral", "sad")
    u = corpus.utterances.set_index("segment_id")
    assert u.loc["1001_IEO_ANG_HI"].votes == [5.0, 0.0, 0.0, 0.0, 1.0, 0.0] and u.loc["1001_IEO_ANG_HI"].majority == 0
    tie = u.loc["1001_TIE_NEU_XX"]
    assert tie.total_emotion == "A:N" and tie.majority == -1
    assert tie.text == SENTENCES["TIE"]


def test_no_dimensions(root):
    corpus = load_corpus(root, verbose=False)
    assert corpus.dimensions == () and corpus.scales == {"CREMA-D": None}
    assert all(math.isnan(v) for v in corpus.utterances.valence)


def test_exclusions_and_actor_folds(root):
    corpus = load_corpus(root, verbose=False)
    reasons = corpus.excluded.set_index("segment_id").reason
    assert reasons["1002_TIE_SAD_LO"].startswith("missing wav")
    assert reasons["1003_TIE_FEA_LO"].startswith("no voice-only votes")
    folds = dict(zip(corpus.sessions.session, corpus.sessions.fold))
    assert folds == {1001 + a: a // 2 for a in range(10)}  # 10 actors → 5 contiguous folds of 2
    assert corpus.splits == {"CREMA-D": "actor"}


def test_generated_release(tmp_path):
    write_fixture(tmp_path, actors=5, sentences=1)
    corpus = load_corpus(tmp_path, verbose=False)
    assert len(corpus.utterances) == 5 * 6 and sorted(set(corpus.utterances.fold)) == list(range(5))

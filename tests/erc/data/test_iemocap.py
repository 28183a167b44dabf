"""erc.data.iemocap: a generated IEMOCAP in its release layout, with the release's quirks."""

import numpy as np
import pytest

from erc.data import load_corpus
from erc.data.iemocap import RELEASE, Turn, write_dialog, write_fixture

DIALOG = "Ses{s:02d}F_impro01"


def turn(s: int, k: int, categorical, dimensional=(), **kw) -> Turn:
    return Turn(utt=f"{DIALOG.format(s=s)}_F{k:03d}", start=k, end=k + 0.9, code="xxx", vad=(2.5, 3.5, 3.0),
                categorical=list(categorical), dimensional=list(dimensional), **kw)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("iemocap")
    rng = np.random.default_rng(0)
    quirks = [
        # an evaluator naming two categories gives 1/2 to each; the actor's self-evaluation is no vote
        turn(1, 0, [("E1", ["Anger", "Frustration"]), ("E2", ["Anger"]), ("E3", ["Neutral state"]),
                    ("F1", ["Sadness", "Sadness"])],
             [("E1", 2, 4, 5), ("E2", 1, 5, None), ("F1", 5, 1, 1)]),  # E2's dominance missing
        turn(1, 1, [("E1", ["Happiness"]), ("E2", ["Sadness"]), ("E3", ["Excited", "Other"])]),  # no A-E lines
        turn(1, 2, [("E1", ["Other"]), ("E2", ["Frustration"])]),  # no vote in the four classes
        turn(1, 3, [("E1", ["Sadness"])], wav=False),
        turn(1, 4, [("E1", ["Sadness"])], text=None),
    ]
    write_dialog(root / RELEASE, 1, DIALOG.format(s=1), quirks, rng)
    for s in range(2, 6):
        write_dialog(root / RELEASE, s, DIALOG.format(s=s), [turn(s, 0, [("E1", ["Neutral"])])], rng)
    return root


def test_votes_from_external_evaluators_only(release):
    corpus = load_corpus(release, verbose=False)
    assert corpus.classes == ("neutral", "happy", "sad", "angry")
    u = corpus.utterances.set_index("segment_id")
    first = u.loc["Ses01F_impro01_F000"]
    assert first.votes == [1.0, 0.0, 0.0, 1.5] and first.majority == 3  # Frustration dropped, self ignored
    # valence/arousal: the mean of the A-E lines (not A-F), dominance missing on one
    assert (first.valence, first.arousal) == (1.5, 4.5)
    assert first.valence_ratings == [2.0, 1.0]
    happy = u.loc["Ses01F_impro01_F001"]
    assert happy.votes == [0.0, 1.5, 1.0, 0.0] and happy.majority == 1  # Happiness + Excited/2 both vote happy
    assert (happy.valence, happy.arousal) == (2.5, 3.5)  # no A-E lines: the turn line's bracket


def test_a_tie_is_minus_one(tmp_path):
    rng = np.random.default_rng(0)
    for s in range(1, 6):
        write_dialog(tmp_path / RELEASE, s, DIALOG.format(s=s), [turn(s, 0, [("E1", ["Happiness"]), ("E2", ["Anger"])])],
                     rng)
    u = load_corpus(tmp_path, verbose=False).utterances
    assert (u.majority == -1).all() and u.votes.tolist()[0] == [0.0, 1.0, 0.0, 1.0]


def test_exclusions_name_their_reason(release):
    reasons = load_corpus(release, verbose=False).excluded.set_index("segment_id").reason
    assert reasons["Ses01F_impro01_F002"] == "no vote in the class set: four (neutral, happy, sad, angry)"
    assert reasons["Ses01F_impro01_F003"].startswith("missing wav")
    assert reasons["Ses01F_impro01_F004"].startswith("missing transcript line")
    assert len(reasons) == 3  # the transcript's unevaluated turn is ignored, not excluded


def test_every_category_as_a_class_set(release):
    corpus = load_corpus(release, verbose=False, classes="all")
    assert corpus.classes[:3] == ("neutral", "happiness", "excited") and len(corpus.classes) == 10
    u = corpus.utterances.set_index("segment_id")
    assert "Ses01F_impro01_F002" in u.index  # Other and Frustration are classes now
    assert u.loc["Ses01F_impro01_F000"].votes[corpus.classes.index("frustration")] == 0.5


def test_session_s_is_fold_s_minus_one(release):
    corpus = load_corpus(release, verbose=False)
    assert dict(zip(corpus.sessions.session, corpus.sessions.fold)) == {s: s - 1 for s in range(1, 6)}
    assert corpus.splits == {"IEMOCAP": "session"}


def test_generated_release_reads_whole(tmp_path):
    write_fixture(tmp_path, sessions=5, dialogs=1, turns=4)
    corpus = load_corpus(tmp_path / RELEASE, verbose=False)  # the release folder itself works too
    assert len(corpus.utterances) + len(corpus.excluded) == 20
    assert set(corpus.utterances.fold) == set(range(5))

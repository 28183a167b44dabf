"""erc.data.msp_podcast: a generated MSP-Podcast in its release layout: packed worker lines, the
``labels_concensus`` spelling, a lower-case labels folder, the official partition."""

import numpy as np
import pytest

from erc.data import load_corpus
from erc.data.msp_podcast import Segment, format_detail, parse_detail, write_fixture, write_release

NAME = "MSP-PODCAST_0001_{:04d}.wav"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("msp")
    workers = [format_detail("WORKER0000001", "Neutral", ["Neutral", "Confused"], 1, 4, 1),
               "WORKER0000002; Angry; A:5.000000; V:2.000000; D:6.000000;",  # no secondary field
               format_detail("WORKER0000003", "Other-Bored", None, 3, 3, 3),
               format_detail("WORKER0000004", "Angry", ["Angry"], 6, 3, 5)]
    segments = [Segment(NAME.format(1), "Train", "12", workers, emo_class="A"),
                Segment(NAME.format(2), "Validation", "13", workers[:2]),  # older releases' dev name; a tie
                Segment(NAME.format(3), "Test1", "Unknown", workers[:1]),
                Segment(NAME.format(4), "Test2", "14", workers[:1]),
                Segment(NAME.format(5), "Train", "12", workers[:1], text=None),
                Segment(NAME.format(6), "Train", "12", workers[2:3])]  # only Other: no vote in eight classes
    write_release(root / "MSP-PODCAST-Publish-1.9", segments, np.random.default_rng(0),
                  consensus="labels_concensus", labels="labels")
    return root


def test_packed_detail_found_by_prefix():
    assert parse_detail("WORKER0000002; Angry; A:5.000000; V:2.000000; D:6.000000;") == (
        "WORKER0000002", "A", {"arousal": 5.0, "valence": 2.0, "dominance": 6.0})
    assert parse_detail("W; Other-Bored; Bored; A:1; V:2; D:3;")[1] == "O"


def test_votes_dimensions_and_partition(root):
    corpus = load_corpus(root, verbose=False)
    assert corpus.classes == ("angry", "sad", "happy", "surprise", "fear", "disgust", "contempt", "neutral")
    assert corpus.splits == {"MSP-Podcast": "official"} and corpus.scales == {"MSP-Podcast": (1.0, 7.0)}
    u = corpus.utterances.set_index("segment_id")
    first = u.loc["MSP-PODCAST_0001_0001"]
    assert first.votes == [2.0, 0, 0, 0, 0, 0, 0, 1.0] and first.majority == 0  # Other-Bored dropped
    assert (first.arousal, first.valence) == (15 / 4, 3.0)  # the workers' mean, Other's worker included
    assert u.loc["MSP-PODCAST_0001_0002"].majority == -1
    assert dict(u.split) == {"MSP-PODCAST_0001_0001": "train", "MSP-PODCAST_0001_0002": "dev",
                             "MSP-PODCAST_0001_0003": "test"}
    assert (u.fold == -1).all() and u.loc["MSP-PODCAST_0001_0003"].session == -1


def test_exclusions(root):
    reasons = load_corpus(root, verbose=False).excluded.set_index("segment_id").reason
    assert reasons["MSP-PODCAST_0001_0004"] == "outside the official partition: Split_Set 'Test2'"
    assert reasons["MSP-PODCAST_0001_0005"].startswith("missing transcript")
    assert reasons["MSP-PODCAST_0001_0006"].startswith("no vote in the class set: eight")
    assert len(reasons) == 3


def test_generated_release(tmp_path):
    write_fixture(tmp_path, per_split=4)
    corpus = load_corpus(tmp_path, verbose=False)
    assert len(corpus.utterances) == 12 and set(corpus.utterances.split) == {"train", "dev", "test"}

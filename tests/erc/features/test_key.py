"""erc.features.key: the fingerprint covers the class set and the partition without moving KEMDy's keys."""

import pandas as pd

from erc.features.key import fingerprint, label_columns
from erc.vocab import DIMENSIONS, EMOTIONS


def utterances(**extra) -> pd.DataFrame:
    return pd.DataFrame({"segment_id": ["a", "b"], "text": ["x", "y"], "votes": [[1] * 7, [2] * 7],
                         "majority": [-1, -1], "valence": [3.0, 2.0], "arousal": [1.0, 4.0], "fold": [0, 1],
                         "corpus": ["KEMDy19"] * 2, "session": [1, 2], **extra})


def key(table: pd.DataFrame, **kw) -> str:
    return fingerprint(table, ["d1", "d2"], "audio-id", "text-id", 7.0, **kw)


def test_kemdy_key_is_unchanged_by_the_class_set_arguments():
    # the key a KEMDy cache had before other corpora existed (recorded on main before this change)
    assert key(utterances()) == key(utterances(), classes=EMOTIONS, dimensions=DIMENSIONS) == "fc1ea46f29cb03a786bda66d"
    assert key(utterances(split=["", ""])) == key(utterances())  # an empty split column is no partition
    assert label_columns(utterances()) == label_columns(utterances(split=["", ""]))


def test_other_classes_dimensions_or_a_partition_change_the_key():
    base = key(utterances())
    renamed = ("a", "b", "c", "d", "e", "f", "g")
    assert key(utterances(), classes=renamed) != base
    assert key(utterances(), dimensions=()) != base
    parted = utterances(split=["train", "test"])
    assert "split" in label_columns(parted) and key(parted) != base

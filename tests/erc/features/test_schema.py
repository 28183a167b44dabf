"""erc.features.schema: votes keep whole numbers when they are, fractions otherwise; any class count."""

import numpy as np
import pandas as pd
import pytest

from erc.features.schema import has_partition, to_dataset, vote_array


def table(votes, split=None) -> pd.DataFrame:
    n = len(votes)
    frame = pd.DataFrame({"segment_id": [f"u{i}" for i in range(n)], "votes": votes, "majority": [0] * n,
                          "valence": [np.nan] * n, "arousal": [np.nan] * n, "fold": [-1] * n,
                          "corpus": ["c"] * n, "session": [0] * n})
    if split is not None:
        frame["split"] = split
    return frame


def test_whole_votes_stay_int64_and_fractional_votes_are_not_rounded():
    assert vote_array([[1, 2, 7], [0.0, 3.0, 7.0]], 3).dtype == np.int64
    fractional = vote_array([[0.5, 0.5, 1.0], [1 / 3, 2 / 3, 0.0]], 3)
    assert fractional.dtype == np.float64
    np.testing.assert_allclose(fractional[1], [1 / 3, 2 / 3, 0.0])
    with pytest.raises(ValueError, match="4 values per utterance"):
        vote_array([[1, 2, 3]], 4)


def test_dataset_holds_any_class_count_and_the_partition_only_where_there_is_one():
    audio, text = np.zeros((2, 3), np.float32), np.zeros((2, 2), np.float32)
    ds = to_dataset(table([[0.5, 1.5, 0.0, 1.0], [2, 0, 0, 0]]), audio, text, n_classes=4)
    assert ds.features["votes"].length == 4 and ds.features["votes"].feature.dtype == "float64"
    assert ds["votes"][0] == [0.5, 1.5, 0.0, 1.0] and "split" not in ds.column_names
    parted = table([[1, 0], [0, 1]], split=["train", "test"])
    assert has_partition(parted) and not has_partition(table([[1, 0]], split=[""]))
    assert to_dataset(parted, audio, text, n_classes=2)["split"] == ["train", "test"]

"""erc.table.FeatureTable: one row type, split by fold, subset by index."""

from __future__ import annotations

import numpy as np
import pytest

from erc.table import FeatureTable
from tests.synthetic import synthetic_features


def test_split_is_by_fold_and_exclude_keeps_a_fold_out_of_both_sides():
    table = synthetic_features(n=200, seed=0)
    train, valid = table.split(2)
    assert set(valid.fold.tolist()) == {2} and 2 not in set(train.fold.tolist())
    assert len(train) + len(valid) == len(table)
    inner_train, inner_valid = table.split(3, exclude=[2])
    assert set(inner_valid.fold.tolist()) == {3} and set(inner_train.fold.tolist()) == {0, 1, 4}
    with pytest.raises(ValueError, match="fold 7"):
        table.split(7)
    with pytest.raises(ValueError, match="both"):
        table.split(2, exclude=[2])


def test_subset_keeps_rows_aligned():
    table = synthetic_features(n=50, seed=1)
    part = table.subset([4, 1])
    assert list(part.segment_id) == [table.segment_id[4], table.segment_id[1]]
    np.testing.assert_array_equal(part.audio, table.audio[[4, 1]])
    np.testing.assert_array_equal(part.va, table.va[[4, 1]])


def test_from_columns_uses_the_cache_names_and_derives_majority():
    table = synthetic_features(n=30, seed=2)
    columns = {"segment_id": table.segment_id, "corpus": table.corpus, "session": table.session, "fold": table.fold,
               "audio_vec": list(table.audio), "text_vec": table.text, "votes": table.votes,
               "valence": table.valence, "arousal": table.arousal}
    again = FeatureTable.from_columns(columns)
    np.testing.assert_array_equal(again.majority, table.majority)
    np.testing.assert_array_equal(again.audio, table.audio)
    with pytest.raises(KeyError, match="text"):
        FeatureTable.from_columns({k: v for k, v in columns.items() if k != "text_vec"})
    with pytest.raises(ValueError, match="length"):
        FeatureTable.from_columns({**columns, "valence": table.valence[:-1]})

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


def _sessions(rows: FeatureTable) -> set[tuple[str, int]]:
    return set(zip(rows.corpus.tolist(), rows.session.tolist(), strict=True))


def test_dev_train_and_held_out_are_disjoint_and_cover_the_table():
    one = synthetic_features(n=400, seed=0, n_sessions=20)
    # two corpora numbering their sessions alike: the dev set is carved per corpus
    two = FeatureTable(**{**{k: np.concatenate([getattr(one, k)] * 2) for k in
                             ("session", "fold", "audio", "text", "votes", "majority", "valence", "arousal")},
                          "segment_id": np.concatenate([one.segment_id, np.char.add("B", one.segment_id)]),
                          "corpus": np.array(["A"] * len(one) + ["B"] * len(one))})
    for fold in range(5):
        train, dev, valid = two.split_dev(fold)
        parts = [set(p.segment_id.tolist()) for p in (train, dev, valid)]
        assert sum(map(len, parts)) == len(two) and set.union(*parts) == set(two.segment_id.tolist())
        assert not (_sessions(train) & _sessions(dev) or _sessions(train) & _sessions(valid)
                    or _sessions(dev) & _sessions(valid))  # never a session on two sides
        assert set(valid.fold.tolist()) == {fold} and fold not in set(dev.fold.tolist())
        assert {c for c, _ in _sessions(dev)} == {"A", "B"}  # each corpus gives its own dev sessions
        assert 0.15 < len(dev) / (len(train) + len(dev)) < 0.3  # about a fifth of the training sessions
        # the rule depends on the fold only: the plain split's training rows, minus the dev sessions
        plain_train, plain_valid = two.split(fold)
        assert set(plain_train.segment_id.tolist()) == parts[0] | parts[1]
        assert set(plain_valid.segment_id.tolist()) == parts[2]


def test_nested_split_keeps_the_outer_fold_out_of_train_dev_and_inner_validation():
    table = synthetic_features(n=400, seed=0)
    for outer in range(5):
        for inner in (k for k in range(5) if k != outer):
            train, dev, valid = table.split_dev(inner, exclude=[outer])
            assert all(outer not in set(p.fold.tolist()) for p in (train, dev, valid))


def test_split_for_follows_select_on():
    table = synthetic_features(n=200, seed=0)
    train, dev, valid = table.split_for(1, "valid")
    assert dev is None and len(train) + len(valid) == len(table)
    train, dev, valid = table.split_for(1, "dev")
    assert len(dev) > 0 and len(train) + len(dev) + len(valid) == len(table)
    with pytest.raises(ValueError, match="choose from"):
        table.split_for(1, "test")


def test_a_corpus_with_an_official_partition_uses_its_own_dev_part():
    from erc.table import dev_mask

    corpus = np.array(["K"] * 6 + ["M"] * 4)
    session = np.array([1, 2, 3, 4, 5, 6, 0, 0, 0, 0])
    partition = np.array([""] * 6 + ["train", "dev", "dev", "train"])
    train = np.ones(10, dtype=bool)
    mask = dev_mask(corpus, session, train, 0, partition)
    assert mask.tolist() == [True] * 2 + [False] * 4 + [False, True, True, False]  # K: sessions 1-2 (rule)


def test_dev_rows_of_a_fold_minus_one_trial():
    from erc.table import dev_mask, split_masks
    from erc.vocab import NO_FOLD

    # cross-corpus: all of A is "train" (10 sessions, 2 rows each), all of B "test": the session rule carves A
    corpus = np.array(["A"] * 20 + ["B"] * 6)
    session = np.array([s for s in range(1, 11) for _ in range(2)] + [1, 1, 2, 2, 3, 3])
    partition = np.array(["train"] * 20 + ["test"] * 6)
    fold = np.full(len(corpus), NO_FOLD)
    train, test = split_masks(fold, NO_FOLD, (), partition)
    dev = dev_mask(corpus, session, train, NO_FOLD, partition)
    assert dev.any() and not (dev & test).any() and set(corpus[dev]) == {"A"}
    assert set(session[dev]) and all(dev[session == s].sum() == 2 for s in set(session[dev & (corpus == "A")]))
    # an official partition: its own dev part, outside both train and test
    official = np.array(["train"] * 14 + ["dev"] * 6 + ["test"] * 6)
    train, test = split_masks(fold, NO_FOLD, (), official)
    dev = dev_mask(corpus, session, train, NO_FOLD, official)
    assert (dev == (official == "dev")).all() and not (dev & (train | test)).any()

import pytest

from erc.data.folds import dev_sessions, session_folds


def test_divisible_count_kemdy19():
    folds = session_folds(range(1, 21))
    assert [folds[s] for s in range(1, 21)] == [k for k in range(5) for _ in range(4)]


def test_uneven_count_first_groups_get_more():
    folds = session_folds(range(1, 13))  # 12 sessions → 3, 3, 2, 2, 2
    assert [list(folds.values()).count(k) for k in range(5)] == [3, 3, 2, 2, 2]
    assert [folds[s] for s in (1, 3, 4, 6, 7, 8, 9, 12)] == [0, 0, 1, 1, 2, 2, 3, 4]


def test_contiguous_in_session_order_regardless_of_input_order():
    # Repeats (one entry per utterance) count once; the order of the input does not matter.
    folds = session_folds([40, 3, 1, 2, 7, 9, 8, 5, 6, 4, 4, 40, 1])
    assert folds == {1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 2, 7: 3, 8: 3, 9: 4, 40: 4}


def test_too_few_sessions_is_an_error():
    with pytest.raises(ValueError, match="3 sessions"):
        session_folds([1, 2, 3])


def test_dev_set_is_one_contiguous_group_of_the_training_sessions_chosen_by_the_fold():
    # KEMDy19, fold 0 held out: sessions 5..20 train; cut into 5 groups (4, 3, 3, 3, 3), group 0 is dev
    train = [s for s in range(1, 21) if s > 4]
    assert dev_sessions(train, 0) == [5, 6, 7, 8]
    assert dev_sessions(train, 2) == [12, 13, 14]
    # only the fold decides: the order (and repeats) of the input do not
    assert dev_sessions(list(reversed(train)) + train, 2) == [12, 13, 14]
    for fold in range(5):
        held_out = [s for s, k in session_folds(range(1, 21)).items() if k == fold]
        rest = [s for s in range(1, 21) if s not in held_out]
        dev = dev_sessions(rest, fold)
        start = rest.index(dev[0])
        assert dev == rest[start : start + len(dev)]  # contiguous among the training sessions
        assert set(dev) < set(rest) and not set(dev) & set(held_out) and len(dev) in (3, 4)


def test_dev_set_of_few_training_sessions():
    assert dev_sessions([3, 4], 0) == [3] and dev_sessions([3, 4], 1) == [4] and dev_sessions([3, 4], 4) == [3]
    with pytest.raises(ValueError, match="none to train on"):
        dev_sessions([7], 0)

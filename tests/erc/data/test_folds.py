import pytest

from erc.data.folds import session_folds


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

import numpy as np
import pytest
import torch

from erc.labels import entropy, hard, peakl, soft


def random_votes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.choice(7, 10, p=rng.dirichlet(np.ones(7) * 0.5)), minlength=7)
                     for _ in range(n)])


def test_soft_is_vote_share():
    votes = np.array([[0, 0, 0, 7, 3, 0, 0], [10, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_allclose(soft(votes), votes / 10)


def test_hard_majority_and_ties():
    votes = np.array([[0, 0, 0, 7, 3, 0, 0], [0, 5, 0, 0, 5, 0, 0], [1, 1, 1, 1, 2, 2, 2]])
    np.testing.assert_array_equal(hard(votes), [3, -1, -1])
    np.testing.assert_array_equal(hard(torch.tensor(votes)).numpy(), [3, -1, -1])


def test_peakl_matches_formula_by_hand():
    y = np.array([0.5, 0.3, 0.2, 0, 0, 0, 0])
    h = -(0.5 * np.log(0.5) + 0.3 * np.log(0.3) + 0.2 * np.log(0.2))
    r = np.tanh(h)
    expected = np.maximum(y - r / 7, 0) / (1 - r)
    np.testing.assert_allclose(peakl(y[None])[0], expected / expected.sum())


def test_peakl_properties():
    y = soft(random_votes(500))
    p = peakl(y)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert (p >= 0).all()
    unique_top = (y == y.max(axis=1, keepdims=True)).sum(axis=1) == 1
    np.testing.assert_array_equal(p[unique_top].argmax(1), y[unique_top].argmax(1))
    assert (entropy(p) <= entropy(y) + 1e-12).all()
    # it really sharpens, unless all the mass is spread evenly over the voted classes (5/5 stays 5/5)
    uneven = np.array([len(set(row[row > 0])) > 1 for row in y])
    assert uneven.sum() > 100 and (entropy(p) < entropy(y) - 1e-6)[uneven].all()


def test_peakl_one_hot_unchanged():
    eye = np.eye(7)
    np.testing.assert_allclose(peakl(eye), eye)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_in_torch_out(dtype):
    y = soft(random_votes(50, seed=1))
    out = peakl(torch.tensor(y, dtype=dtype))
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.double().numpy(), peakl(y), atol=1e-5 if dtype == torch.float32 else 1e-12)
    votes = random_votes(20, seed=2)
    for fn, arg in [(soft, votes), (hard, votes), (entropy, soft(votes))]:
        result = fn(torch.tensor(arg))
        assert isinstance(result, torch.Tensor), fn.__name__
        np.testing.assert_allclose(result.numpy(), fn(arg), err_msg=fn.__name__)


def test_entropy_by_hand():
    y = np.array([[0.5, 0.5, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0], [1 / 7] * 7])
    np.testing.assert_allclose(entropy(y), [np.log(2), 0.0, np.log(7)])

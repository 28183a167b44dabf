"""erc.data.agreement: Krippendorff's alpha and Fleiss' kappa on known cases and the generated corpora."""

import math

import numpy as np
import pytest

from erc.data import load_corpus
from erc.data.agreement import agreement, category_alpha, dimension_alpha, fleiss_kappa


def test_perfect_and_chance_agreement():
    perfect = np.array([[3, 0], [0, 3], [3, 0]])
    assert category_alpha(perfect) == pytest.approx(1.0) and fleiss_kappa(perfect) == pytest.approx(1.0)
    assert dimension_alpha([[1, 1], [5, 5], [3, 3]]) == pytest.approx(1.0)
    assert fleiss_kappa(np.array([[1.5, 1.5], [3, 0]])) is None  # fractional votes
    assert fleiss_kappa(np.array([[2, 0], [3, 0]])) is None  # unequal raters


def test_demo_agreement(demo_root):
    table = agreement(load_corpus(demo_root, verbose=False)).set_index("corpus")
    assert list(table.index) == ["KEMDy19", "KEMDy20"]
    assert (table.alpha_categories.between(0, 1)).all() and table.fleiss_kappa.notna().all()
    assert (table.alpha_valence > 0.3).all()


def test_no_dimensions_no_dimension_alpha(tmp_path):
    from erc.data.crema_d import write_fixture

    write_fixture(tmp_path, actors=5, sentences=1)
    row = agreement(load_corpus(tmp_path, verbose=False)).iloc[0]
    assert math.isnan(row.alpha_valence) and row.alpha_categories > 0

"""sweeps/spaces.py: search spaces as data, and every way a file can be wrong."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from erc.vocab import fusion_names
from sweeps.spaces import SpaceError, load_space


@pytest.mark.parametrize("name", fusion_names())
def test_shipped_spaces_load(name):
    """Every registered fusion ships its space, so --tune-per-arm tunes every arm."""
    space = load_space(name)
    assert space.params["fusion"].role == "scientific" and space.params["fusion"].value == name
    sampled = space.distributions()  # what a search samples: the nuisance entries only
    assert set(sampled) == set(space.by_role("nuisance")) and "fusion" not in sampled
    assert isinstance(sampled["lr"], FloatDistribution) and sampled["lr"].log
    held = space.held()  # fixed and scientific entries are plain values
    assert held["epochs"] == 15 and held["fusion"] == name and "lr" not in held


def test_distributions_keep_the_bounds_as_written():
    space = load_space("outer")
    assert space.distributions()["depth"] == IntDistribution(1, 4)  # both ends included, as in the YAML
    assert space.distributions()["dim"] == CategoricalDistribution([32, 64, 128])


@pytest.mark.parametrize("text, message", [
    ("learning_rate: {role: nuisance, distribution: uniform, low: 0, high: 1}", "not a training hyper-parameter"),
    ("lr: 0.1", "expected a mapping"),
    ("lr: {role: tuned, distribution: uniform, low: 0, high: 1}", "role 'tuned'"),
    ("lr: {role: nuisance, distribution: normal, low: 0, high: 1}", "distribution 'normal'"),
    ("lr: {role: nuisance, distribution: uniform, low: 1, high: 0}", "must be below"),
    ("lr: {role: nuisance, distribution: loguniform, low: 0, high: 1}", "low > 0"),
    ("depth: {role: nuisance, distribution: int, low: 1.5, high: 3}", "integers"),
    ("dim: {role: nuisance, distribution: choice, values: []}", "non-empty list"),
    ("lr: {role: nuisance, distribution: uniform, high: 1}", "numeric 'low' and 'high'"),
    ("epochs: {role: fixed}", "needs a 'value'"),
    ("lr: {role: nuisance, distribution: uniform, low: 0, high: 1, step: 2}", "unknown field"),
    ("[1, 2]", "expected a mapping of parameter name"),
    ("lr: {role: [", "not valid YAML"),
])
def test_malformed_spaces_name_the_file_and_entry(tmp_path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError, match=message) as err:
        load_space(path)
    assert str(path) in str(err.value)


def test_missing_space_lists_the_shipped_ones(tmp_path):
    with pytest.raises(SpaceError, match="no such search-space file.*outer.yaml"):
        load_space(tmp_path / "nope.yaml")

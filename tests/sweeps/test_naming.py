"""sweeps/naming.py: one naming and tagging scheme for grid and search trials."""

from __future__ import annotations

import pickle

from erc import contract as C
from sweeps.naming import TrialLabels, run_config_keys, study_name


def test_grid_and_search_names_and_tags():
    config = {"fold": 2, "fusion": "outer", "labels": "peakl", "seed": 1, "lr": 0.00123, "dim": 64}
    grid = TrialLabels()
    assert grid.name(config) == "fold2-outer-peakl"
    assert TrialLabels(with_seed=True).name(config) == "fold2-outer-peakl-seed1"
    assert grid.tags(config) == {C.STAGE: C.GRID_STAGE, C.FUSION: "outer", C.LABELS: "peakl", C.ARM: "outer-peakl",
                                 C.FOLD: "2", C.SEED: "1"}
    search = TrialLabels(stage=C.SEARCH_STAGE, prefix="outer-peakl fold2", extra_tags={C.FOLD: "2"})
    searched = {k: v for k, v in config.items() if k != "fold"}
    assert search.name(searched) == "outer-peakl fold2 lr=0.00123,dim=64"
    assert search.tags(searched)[C.STAGE] == C.SEARCH_STAGE and search.tags(searched)[C.FOLD] == "2"
    # Tune pickles the callback that holds these bound methods with the experiment state
    again = pickle.loads(pickle.dumps(search.name))
    assert again(searched) == search.name(searched)


def test_the_fold_is_not_a_run_config_key():
    assert run_config_keys({"fold": 1, "lr": 0.1}) == {"lr": 0.1}


def test_a_search_trial_is_named_after_its_study():
    """Concurrent searches share one experiment: a trial's config alone says which search it is in."""
    per_arm = {"fold": 2, "fusion": "outer", "labels": "peakl", "lr": 0.00123, "dim": 64}
    assert study_name(per_arm) == "outer-peakl fold2"  # per-arm tuning: one search per arm and outer fold
    assert study_name({k: v for k, v in per_arm.items() if k != "fold"}) == "outer-peakl"  # search.py: per arm
    labels = TrialLabels(stage=C.SEARCH_STAGE)
    assert labels.name(per_arm) == "outer-peakl fold2 lr=0.00123,dim=64"
    assert labels.tags(per_arm)[C.FOLD] == "2" and labels.tags(per_arm)[C.ARM] == "outer-peakl"

"""Runs from MLflow, paired arm by arm: the names other packages import, from the modules that hold them.

- :mod:`analysis.selection`: which runs (a sweep's children, a filter, the whole experiment): ``find_sweep``
- :mod:`analysis.reader`: the selection's finished grid trials as :class:`Trials`: ``load_trials``,
  ``find_trial_run``
- :mod:`analysis.pairing`: two arms paired fold by fold: ``pair_arms`` → :class:`Comparison`
- :mod:`analysis.trials`: the data they pass on (:class:`Sweep`, :class:`Trials`)
- ``search_all`` (every run a filter matches, page by page) lives in :mod:`erc.contract`, beside the
  filter builders, so that the sweep layer need not import analysis for it.
"""

from __future__ import annotations

from analysis.options import DEFAULT_METRICS, METRIC_ORDER, Contrast
from analysis.pairing import Comparison, MissingArmError, pair, pair_arms
from analysis.reader import DuplicateRunsError, find_trial_run, load_trials, metric_values, run_value
from analysis.selection import RUN_ID, find_sweep, get_client, selected_runs
from analysis.trials import BASE_COLUMNS, Sweep, Trials, arm_of, sort_arms
from erc.contract import search_all

__all__ = [
    "BASE_COLUMNS",
    "DEFAULT_METRICS",
    "METRIC_ORDER",
    "RUN_ID",
    "Comparison",
    "Contrast",
    "DuplicateRunsError",
    "MissingArmError",
    "Sweep",
    "Trials",
    "arm_of",
    "find_sweep",
    "find_trial_run",
    "get_client",
    "load_trials",
    "metric_values",
    "pair",
    "pair_arms",
    "run_value",
    "search_all",
    "selected_runs",
    "sort_arms",
]

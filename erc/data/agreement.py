"""Rater agreement per corpus (DESIGN §2): Krippendorff's α for the categories and for each dimension,
Fleiss' κ where every item has the same number of raters.

α is computed from each item's value counts (the ``krippendorff`` package): the class votes
(nominal; an evaluator naming n categories contributes 1/n to each, as in the votes) and the raters'
dimension ratings (interval). Fleiss' κ (``statsmodels``) needs whole votes and the same number of
raters on every item; it is None otherwise. Computed over the usable utterances only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from erc.vocab import DIMENSIONS


def category_alpha(votes: np.ndarray) -> float:
    import krippendorff

    votes = np.asarray(votes, dtype=np.float64)
    votes = votes[votes.sum(axis=1) >= 2]  # an item one rater rated has no pair to agree on
    if len(votes) < 1 or votes.sum() == 0:
        return float("nan")
    return float(krippendorff.alpha(value_counts=votes, level_of_measurement="nominal"))


def dimension_alpha(ratings: list[list[float]]) -> float:
    import krippendorff

    ratings = [list(r) for r in ratings if len(r) >= 2]
    if not ratings:
        return float("nan")
    domain = np.unique(np.concatenate([np.asarray(r, dtype=np.float64) for r in ratings]))
    if len(domain) < 2:
        return float("nan")
    counts = np.array([[np.sum(np.asarray(r) == v) for v in domain] for r in ratings], dtype=np.float64)
    return float(krippendorff.alpha(value_counts=counts, value_domain=domain, level_of_measurement="interval"))


def fleiss_kappa(votes: np.ndarray) -> float | None:
    """Fleiss' κ, or None unless every item has the same whole number of raters."""
    from statsmodels.stats.inter_rater import fleiss_kappa as kappa

    votes = np.asarray(votes, dtype=np.float64)
    totals = votes.sum(axis=1)
    if len(votes) == 0 or not np.all(votes == np.round(votes)) or not np.all(totals == totals[0]) or totals[0] < 2:
        return None
    return float(kappa(votes.astype(np.int64), method="fleiss"))


def agreement(corpus: Any) -> pd.DataFrame:
    """One row per corpus of ``corpus`` (a :class:`erc.data.Corpus`): items, α for the categories and
    each dimension (NaN where the corpus keeps no per-rater ratings), Fleiss' κ (None where not defined)."""
    rows = []
    for name, part in corpus.utterances.groupby("corpus", sort=True):
        votes = np.stack([np.asarray(v, dtype=np.float64) for v in part["votes"]])
        row = {"corpus": name, "n_items": len(part), "alpha_categories": category_alpha(votes)}
        for d in DIMENSIONS:
            row[f"alpha_{d}"] = dimension_alpha(part[f"{d}_ratings"].tolist()) if d in corpus.dimensions else float("nan")
        row["fleiss_kappa"] = fleiss_kappa(votes)
        rows.append(row)
    return pd.DataFrame(rows)

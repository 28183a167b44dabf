"""Session folds (DESIGN §2): contiguous groups of sessions, never a session split across folds."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from erc.vocab import N_FOLDS

__all__ = ["N_FOLDS", "session_folds"]  # N_FOLDS: re-exported for callers that import it from here


def session_folds(sessions: Iterable[int], n_folds: int = N_FOLDS) -> dict[int, int]:
    """Map each session to its fold: sessions in order, cut into ``n_folds`` contiguous groups.

    When the count does not divide evenly the first groups get one session more
    (KEMDy19's 20 sessions → 4 each; 12 sessions → 3, 3, 2, 2, 2).
    """
    ordered = sorted({int(s) for s in sessions})
    if len(ordered) < n_folds:
        raise ValueError(f"{len(ordered)} sessions cannot make {n_folds} session folds: {ordered}")
    return {
        int(s): fold for fold, group in enumerate(np.array_split(np.array(ordered), n_folds)) for s in group
    }

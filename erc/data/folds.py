"""Session folds (DESIGN §2): contiguous groups of sessions, never a session split across folds."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from erc.vocab import N_FOLDS

__all__ = ["N_FOLDS", "dev_sessions", "session_folds"]  # N_FOLDS: re-exported for callers that import it from here


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


def dev_sessions(train_sessions: Iterable[int], fold: int, n_groups: int = N_FOLDS) -> list[int]:
    """The dev set of held-out fold ``fold``: one contiguous group of its training sessions (DESIGN §14).

    The rule depends only on the fold, so every arm of a fold gets the same dev set and arms stay
    paired: the training sessions of one corpus, in order, cut into ``n_groups`` contiguous groups the
    way :func:`session_folds` cuts a corpus (first groups one session more); the dev set is group
    ``fold mod n_groups``. With 5 groups the dev set is about a fifth of the training sessions (s3prl's
    emotion task keeps 20 %), and over the folds it moves along the corpus like the held-out fold.
    Fewer than ``n_groups`` training sessions make one group per session. At least two training
    sessions are needed, so that training keeps one.
    """
    ordered = sorted({int(s) for s in train_sessions})
    if len(ordered) < 2:
        raise ValueError(f"a dev set is carved from the training sessions, and {ordered} leaves none to train on")
    groups = np.array_split(np.array(ordered), min(n_groups, len(ordered)))
    return [int(s) for s in groups[fold % len(groups)]]

"""What every reader produces and every table consumes: the selection (:class:`Sweep`) and its runs
(:class:`Trials`, one row per run), whether they came from MLflow (:mod:`analysis.reader`) or a CSV file
(:mod:`analysis.values`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from analysis.options import METRIC_ORDER
from erc import contract as C

if TYPE_CHECKING:
    from mlflow.entities import Run

# Columns of Trials.runs besides the metrics.
BASE_COLUMNS = ["run_id", C.FOLD, C.SEED, C.FUSION, C.LABELS, C.ARM, C.N_TRAIN, C.N_VALID]
# A trial's size (model/params, model/flops; erc.heads.model_size): columns of Trials.runs where logged,
# described in the per-arm table, never compared as metrics.
SIZE_COLUMNS = C.SIZE_METRICS
# Tags that identify a run rather than describe its arm: never offered as factors.
NOT_FACTORS = frozenset({C.TRIAL_ID, C.NODE_ID, C.NODE_IP, C.ATTEMPTS, C.FAILED_ATTEMPTS, C.LAST_ERROR,
                         C.RESUMED, C.ORPHANED, C.GIT_COMMIT, C.COMMAND, C.FOLD, C.SEED, C.N_TRAIN, C.N_VALID})
# The factors that are columns of Trials.runs (every other factor is in Trials.attributes).
RUN_COLUMNS = (C.FUSION, C.LABELS, C.ARM, C.FOLD, C.SEED)


@dataclass
class Sweep:
    """The runs an analysis reads: a sweep's children (``parent_run_id``) and/or an MLflow filter.

    With neither, every run of the experiment.
    """

    experiment_id: str
    experiment_name: str
    parent_run_id: str | None
    name: str
    filter_string: str = ""

    @property
    def description(self) -> str:
        if self.parent_run_id is not None:
            text = f"sweep {self.name!r} (parent run {self.parent_run_id})"
        else:
            text = f"experiment {self.experiment_name!r}"
        return text + (f", runs matching {self.filter_string!r}" if self.filter_string else "")

    @property
    def scope(self) -> str:
        """What the selection is, as an analysis run records it (tag ``analysis_scope``)."""
        return self.filter_string or "all runs"


def arm_of(arm: str | None, fusion: str | None, labels: str | None) -> str:
    """A run's arm: its ``arm`` tag, else the scientific factors it carries joined (``outer-peakl``; a run
    that carries only a fusion is arm ``outer``); ``""`` for a run that carries none of them."""
    if arm:
        return arm
    if fusion and labels:
        return C.arm_name(fusion, labels)
    return fusion or labels or ""


@dataclass
class Trials:
    """The FINISHED runs of one selection, one row per run, plus what was left out and why."""

    sweep: Sweep
    runs: pd.DataFrame  # columns: BASE_COLUMNS, then one per metric
    metrics: list[str]
    notes: list[str] = field(default_factory=list)
    # Every tag (but MLflow's own) and param of each run, as text, row-aligned with ``runs``: the
    # factors a comparison may name besides fusion and labels.
    attributes: pd.DataFrame | None = None
    values: str = C.DEFAULT_VALUES  # which logged values: "selected" or "best" (contract.VALUE_PREFIXES)
    # The MLflow runs these rows were read from (every status): another set of values (oracle/*, best/*)
    # is read from them without querying the store again. Empty for values from a CSV file.
    source: tuple[Run, ...] = field(default=(), repr=False, compare=False)

    @property
    def arms(self) -> list[str]:
        return sort_arms(self.runs)

    @property
    def factors(self) -> list[str]:
        """Tags/params whose value differs between the runs: what ``compare --factor`` can name."""
        names = {C.FUSION, C.LABELS, C.ARM} & {c for c in self.runs.columns if self.runs[c].nunique() > 1}
        if self.attributes is not None:
            names |= {c for c in self.attributes.columns
                      if c not in NOT_FACTORS and self.attributes[c].nunique(dropna=True) > 1}
        return sorted(names)

    def column(self, name: str) -> pd.Series:
        """The values of a factor (tag or param) per run, as text; NaN where a run lacks it."""
        if name in RUN_COLUMNS:
            col = self.runs[name]
            return pd.Series([None if pd.isna(v) or str(v) == "" else str(v) for v in col],
                             index=col.index, dtype=object)
        if self.attributes is not None and name in self.attributes.columns:
            return self.attributes[name]
        raise ValueError(
            f"unknown factor {name!r}: no selected run carries it as a tag or param; "
            f"factors that vary here: {', '.join(self.factors) or 'none'}"
        )

    def carries(self, name: str) -> bool:
        """Whether any run has a value for the factor ``name`` (a tag, a param or a file's column)."""
        try:
            return bool(self.column(name).notna().any())
        except ValueError:
            return False


def metric_order(names) -> list[str]:
    """Metric names in the paper's order (:data:`analysis.options.METRIC_ORDER`), the rest alphabetically."""
    return sorted(names, key=lambda m: (METRIC_ORDER.index(m) if m in METRIC_ORDER else len(METRIC_ORDER), m))


def sort_arms(runs: pd.DataFrame) -> list[str]:
    """Arms in the paper's order (concat before outer; hard, soft, peakl), unknown values last."""

    def rank(factor: str, value) -> tuple[int, str]:
        order = C.FACTOR_ORDER[factor]
        value = "" if pd.isna(value) else str(value)
        return (order.index(value) if value in order else len(order), value)

    arms = runs[[C.ARM, C.FUSION, C.LABELS]].drop_duplicates(C.ARM)
    arms = arms[arms[C.ARM].astype(str) != ""]
    ranked = sorted(arms.itertuples(index=False),
                    key=lambda a: (rank(C.FUSION, a[1]), rank(C.LABELS, a[2]), str(a[0])))
    return [a[0] for a in ranked]

"""What a report is asked for: which runs, which comparison, which numbers and where the files go.

Standard library and :mod:`erc.vocab` / :mod:`erc.contract` only, so that ``python -m analysis`` builds
its parser (defaults, choices, help) from these names before pandas, pingouin, matplotlib or MLflow load.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from erc import contract as C
from erc import vocab

# Where files go without --out: analysis_out/<sweep>/<command>/ under the working directory.
OUT_DIR = "analysis_out"
ALTERNATIVES: tuple[str, ...] = ("two-sided", "greater", "less")
# Over more than two fusion arms (analysis.many_arms): the post-hoc test after Friedman's — Holm-corrected
# comparisons against the control arm, or Nemenyi's all pairs — and the default control, the paper's baseline.
POSTHOC_METHODS: tuple[str, ...] = ("holm", "nemenyi")
DEFAULT_CONTROL = vocab.DEFAULT_FUSIONS[0]
# Known metrics first, in the paper's order (its tables list arousal before valence; vocab lists the
# dimensions valence first), then the losses; anything else the runs carry follows alphabetically.
METRIC_ORDER: tuple[str, ...] = (*vocab.CLASSIFICATION_METRICS, *reversed(vocab.REGRESSION_METRICS),
                                 *vocab.LOSS_KEYS)
# What the paper's tables show, and so what a comparison shows without --metrics: the paper reports no
# AUROC and no loss (both stay in arms.csv and can be asked for by name).
NOT_IN_PAPER: tuple[str, ...] = ("auroc",)
DEFAULT_METRICS: tuple[str, ...] = tuple(m for m in METRIC_ORDER
                                         if m in vocab.METRIC_KEYS and m not in NOT_IN_PAPER)
VALUES_CSV_HELP = (
    "one row per run: an integer 'fold' column, optional 'seed', optional fold sizes 'n_train'/'n_valid' "
    "(for the Nadeau-Bengio correction; equal folds are assumed without them), factor columns (text, e.g. "
    "fusion, labels, or any name) and metric columns (numbers)"
)


@dataclass(frozen=True, kw_only=True)
class Contrast:
    """What one table compares: ``factor`` at ``treatment`` vs ``baseline``, other factors fixed by ``where``.

    ``factor`` and the keys of ``where`` are any tag or param of the runs (fusion, labels, arm, or a
    researcher's own, e.g. optimizer), or any column of a values file.
    """

    factor: str
    treatment: str
    baseline: str
    where: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.factor in self.where:
            raise ValueError(f"{self.factor!r} is the compared factor; it cannot also be fixed by --where")
        # Text, as tags and params are: a where-value given as a number still matches the runs'.
        object.__setattr__(self, "treatment", str(self.treatment))
        object.__setattr__(self, "baseline", str(self.baseline))
        object.__setattr__(self, "where", {str(k): str(v) for k, v in self.where.items()})

    @property
    def condition(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.where.items())

    @property
    def label(self) -> str:
        """``fusion: outer vs concat (labels=peakl)``: the table's heading."""
        cond = self.condition
        return f"{self.factor}: {self.treatment} vs {self.baseline}" + (f" ({cond})" if cond else "")

    @property
    def slug(self) -> str:
        """``fusion_outer_vs_concat_labels-peakl``: the table's file names."""
        parts = [self.factor, self.treatment, "vs", self.baseline, *(f"{k}-{v}" for k, v in self.where.items())]
        return slugify("_".join(parts))


def slugify(text: str) -> str:
    """``text`` as one file or directory name: runs of other characters become ``-``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)


@dataclass(frozen=True, kw_only=True)
class ReportOptions:
    """Every option of a report (``sweep_report``, ``compare_report``, ``python -m analysis``), once.

    The runs: ``sweep`` (a sweep name or parent run id; default the latest sweep), ``all_runs`` or
    ``filter_string`` (an MLflow filter) in ``experiment`` at ``tracking_uri``; ``values`` says which
    logged values (``selected`` or ``best``); ``values_csv`` reads per-fold values from a CSV file instead
    (nothing is logged then). The tables: ``metrics`` (default :data:`DEFAULT_METRICS` where logged),
    ``extended`` corrections, the Bayesian test's ``rope``, the t-test's ``alternative``; with more than
    two fusions, the ``control`` fusion of the post-hoc test ``posthoc`` and of the paired tables. The files:
    ``out_dir`` (default ``analysis_out/<sweep>/<command>``), ``log_to_mlflow``, ``echo`` (print the
    Markdown).
    """

    # the runs
    experiment: str = vocab.EXPERIMENT
    sweep: str | None = None
    all_runs: bool = False
    filter_string: str | None = None
    tracking_uri: str | None = None
    values: str = C.DEFAULT_VALUES
    values_csv: str | Path | None = None
    # the tables
    metrics: Sequence[str] | None = None
    extended: bool = True
    rope: float | None = None
    alternative: str = ALTERNATIVES[0]
    control: str = DEFAULT_CONTROL
    posthoc: str = POSTHOC_METHODS[0]
    # the files
    out_dir: str | Path | None = None
    log_to_mlflow: bool = True
    echo: bool = True

    def __post_init__(self) -> None:
        if self.values not in C.VALUE_PREFIXES:
            raise ValueError(f"values must be one of {', '.join(C.VALUE_PREFIXES)}, not {self.values!r}")
        if self.alternative not in ALTERNATIVES:
            raise ValueError(f"alternative must be one of {', '.join(ALTERNATIVES)}, not {self.alternative!r}")
        if self.posthoc not in POSTHOC_METHODS:
            raise ValueError(f"posthoc must be one of {', '.join(POSTHOC_METHODS)}, not {self.posthoc!r}")
        if self.sweep is not None and self.all_runs:
            raise ValueError("choose either a sweep or all runs, not both")
        if self.metrics is not None:
            object.__setattr__(self, "metrics", tuple(self.metrics) or None)

    @classmethod
    def of(cls, options: ReportOptions | str | None = None, **changes) -> ReportOptions:
        """``options`` with ``changes`` (field names of this class) applied.

        A string is the experiment's name, so ``sweep_report("erc-sweeps", sweep="demo")`` reads as before.
        """
        if isinstance(options, str):
            changes = {"experiment": options, **changes}
            options = None
        return dataclasses.replace(options or cls(), **changes)

    def clashes_with_values_csv(self) -> list[str]:
        """The run-selecting options given beside ``values_csv`` (a file is read, not MLflow runs)."""
        if self.values_csv is None:
            return []
        given = {"sweep": self.sweep is not None, "all_runs": self.all_runs,
                 "filter_string": self.filter_string is not None, "values": self.values != C.DEFAULT_VALUES}
        return [name for name, on in given.items() if on]


@dataclass(frozen=True, kw_only=True)
class UmapSettings:
    """UMAP's parameters for ``python -m analysis embeddings``; ``random_state`` makes the layout
    reproducible (and single-threaded)."""

    n_neighbors: int = 15
    min_dist: float = 0.1
    metric: str = "euclidean"
    random_state: int = 0

    def min_utterances(self) -> int:
        # UMAP needs more points than neighbours per point (it otherwise shrinks n_neighbors behind
        # the user's back and, for a handful of points, its spectral initialisation fails).
        return self.n_neighbors + 1

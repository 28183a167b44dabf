"""Statistics over finished sweeps: the paper's fold-paired t-test tables, plots and reports.

``paired_table`` works on plain numbers; ``sweep_report`` / ``compare_report`` (in ``analysis.report``)
read a sweep from MLflow, with one ``ReportOptions`` (``analysis.options``). All are imported on first
use, so that ``import analysis`` stays cheap (Ray workers import the package too).
"""

__all__ = ["Contrast", "ReportOptions", "compare_report", "paired_table", "sweep_report"]

# name -> the module that holds it; each is imported when first asked for
_LAZY = {
    "paired_table": "analysis.stats",
    "sweep_report": "analysis.report",
    "compare_report": "analysis.report",
    "ReportOptions": "analysis.options",
    "Contrast": "analysis.options",
}


def __getattr__(name: str):
    # Lazy, so that ``python -m analysis --help`` answers without importing pingouin or MLflow.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")

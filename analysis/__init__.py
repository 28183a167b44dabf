"""Statistics over finished sweeps: the paper's fold-paired t-test tables, plots and reports.

``paired_table`` works on plain numbers; ``sweep_report`` / ``compare_report`` (in
``analysis.report``) read a sweep from MLflow. All are imported on first use, so that
``import analysis`` stays cheap (Ray workers import the package too).
"""

__all__ = ["compare_report", "paired_table", "sweep_report"]


def __getattr__(name: str):
    # Lazy, so that ``python -m analysis --help`` answers without importing pingouin or MLflow.
    if name == "paired_table":
        from analysis.stats import paired_table

        return paired_table
    if name in ("sweep_report", "compare_report"):
        from analysis import report

        return getattr(report, name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")

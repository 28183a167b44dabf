"""Fold-paired plots: one panel per metric, one line per fold from the baseline to the treatment."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: reports are made on cluster heads and in CI, never on a display

import matplotlib.pyplot as plt

from analysis.stats import key_label, sorted_keys


def paired_plot(
    treatment: Mapping[str, Mapping[Hashable, float]],
    baseline: Mapping[str, Mapping[Hashable, float]],
    path: str | Path,
    treatment_name: str = "treatment",
    baseline_name: str = "baseline",
    title: str | None = None,
) -> Path:
    """Save a PNG with a panel per metric; each fold is a line baseline -> treatment.

    A line going up on most folds is what a positive paired T looks like; one steep line among flat
    ones shows a single fold driving the mean, which the table alone hides.
    """
    metrics = list(treatment)
    width = 2.4 * len(metrics) + 1.4
    fig, axes = plt.subplots(1, len(metrics), figsize=(width, 3.2), squeeze=False)
    # Fixed margins instead of tight_layout/bbox_inches="tight": each of those re-draws the figure,
    # which made plotting the slowest step of a report.
    fig.subplots_adjust(left=0.9 / width, right=1 - 1.2 / width, bottom=0.12, top=0.8, wspace=0.5)
    cmap = plt.get_cmap("tab10")
    for ax, metric in zip(axes[0], metrics, strict=True):
        keys = sorted_keys(set(treatment[metric]) & set(baseline[metric]))
        for i, k in enumerate(keys):
            ax.plot(
                [0, 1],
                [baseline[metric][k], treatment[metric][k]],
                marker="o",
                color=cmap(i % 10),
                label=key_label(k),
            )
        ax.set_xticks([0, 1], [baseline_name, treatment_name])
        ax.set_xlim(-0.3, 1.3)
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize="x-small", loc="center right")
    if title:
        fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

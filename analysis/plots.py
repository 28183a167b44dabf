"""Report figures: fold-paired panels, per-arm fold values of a metric, and PeakL's effect on the labels.

Each figure is drawn by a ``draw_*`` function that returns the matplotlib ``Figure`` (what tests read the
lines and points of) and saved by the function the report calls (``paired_plot``, ``arm_plot``,
``peakl_figure``), which writes the PNG and closes the figure.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: reports are made on cluster heads and in CI, never on a display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from analysis.folds import key_label, sorted_keys
from erc import vocab

DPI = 100


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (creating its directory) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
    return path


def paired_plot(
    treatment: Mapping[str, Mapping[Hashable, float]],
    baseline: Mapping[str, Mapping[Hashable, float]],
    path: str | Path,
    treatment_name: str = "treatment",
    baseline_name: str = "baseline",
    title: str | None = None,
) -> Path:
    """Save :func:`draw_paired` as a PNG at ``path``."""
    return save(draw_paired(treatment, baseline, treatment_name, baseline_name, title), path)


def draw_paired(
    treatment: Mapping[str, Mapping[Hashable, float]],
    baseline: Mapping[str, Mapping[Hashable, float]],
    treatment_name: str = "treatment",
    baseline_name: str = "baseline",
    title: str | None = None,
) -> Figure:
    """A panel per metric; each fold is a line from its baseline value (x = 0) to its treatment value (x = 1).

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
    return fig


def arm_plot(
    values: Mapping[str, Mapping[Hashable, float]],
    path: str | Path,
    metric: str,
    title: str | None = None,
) -> Path:
    """Save :func:`draw_arms` as a PNG at ``path``."""
    return save(draw_arms(values, metric, title), path)


def draw_arms(values: Mapping[str, Mapping[Hashable, float]], metric: str, title: str | None = None) -> Figure:
    """One metric: arms on the x axis, each arm's fold values as points over a box.

    ``values`` maps arm -> {fold key: value}. A fold keeps its colour in every arm and a faint line
    joins its values, so the fold-to-fold spread the t-tests pair away stays visible; the black bar
    is the arm's mean.
    """
    arms = list(values)
    keys = sorted_keys({k for per_arm in values.values() for k in per_arm})
    colour = {k: plt.get_cmap("tab10")(i % 10) for i, k in enumerate(keys)}
    width = 1.1 * max(len(arms), 2) + 2.6
    fig, ax = plt.subplots(figsize=(width, 3.6))
    fig.subplots_adjust(left=0.9 / width, right=1 - 1.6 / width, bottom=0.14, top=0.86)
    data = [[values[a][k] for k in keys if k in values[a]] for a in arms]
    ax.boxplot(
        data,
        positions=range(len(arms)),
        widths=0.5,
        showfliers=False,
        patch_artist=True,
        boxprops={"facecolor": "0.92", "edgecolor": "0.6"},
        medianprops={"color": "0.6"},
        whiskerprops={"color": "0.6"},
        capprops={"color": "0.6"},
    )
    # Deterministic jitter: a fold sits at the same offset in every arm.
    offset = {k: (i - (len(keys) - 1) / 2) * min(0.3 / max(len(keys), 1), 0.08) for i, k in enumerate(keys)}
    for k in keys:
        xs = [i + offset[k] for i, a in enumerate(arms) if k in values[a]]
        ys = [values[a][k] for a in arms if k in values[a]]
        ax.plot(xs, ys, color=colour[k], alpha=0.35, lw=1, zorder=2)
        ax.scatter(xs, ys, color=colour[k], s=28, zorder=3, label=key_label(k), edgecolors="white", lw=0.5)
    means = [sum(d) / len(d) if d else float("nan") for d in data]
    ax.scatter(range(len(arms)), means, marker="_", s=500, color="black", lw=2, zorder=4, label="mean")
    ax.set_xticks(range(len(arms)), arms, rotation=20 if len(arms) > 3 else 0)
    ax.set_xlim(-0.6, len(arms) - 0.4)
    ax.set_ylabel(metric)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or f"{metric}: fold values per arm", fontsize="small")
    ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return fig


def _short(name: str) -> str:
    return name[:3]


def peakl_figure(votes: np.ndarray, path: str | Path, examples: int = 4) -> Path:
    """Save :func:`draw_peakl` as a PNG at ``path``."""
    return save(draw_peakl(votes, examples), path)


def draw_peakl(votes: np.ndarray, examples: int = 4) -> Figure:
    """The training labels before (soft vote shares) and after PeakL.

    Top: histograms of the entropy and of the top-class probability of every soft label and its PeakL
    target (PeakL moves mass to the left of the entropy histogram and to the right of the top-class
    one: more certain targets). Bottom: a few vote vectors of increasing ambiguity, soft shares as bars
    and an arrow per class from the soft share to the PeakL probability.
    """
    from erc.labels import entropy, peakl, soft  # torch: only when a PeakL figure is drawn

    emotions = vocab.EMOTIONS
    v = np.asarray(votes, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != len(emotions):
        raise ValueError(f"votes must be (N, {len(emotions)}) counts, got shape {v.shape}")
    v = v[v.sum(axis=1) > 0]
    y_soft = soft(v)
    y_peak = peakl(y_soft)
    # clip: a one-hot PeakL target's entropy comes out as -0.0 and would print as "-0.00"
    h_soft, h_peak = np.clip(entropy(y_soft), 0, None) + 0.0, np.clip(entropy(y_peak), 0, None) + 0.0
    m_soft, m_peak = y_soft.max(axis=1), y_peak.max(axis=1)

    # Examples: distinct vote vectors that PeakL changes, spread over the soft entropy.
    uniq, first = np.unique(v, axis=0, return_index=True)
    changed = [i for i in first if h_soft[i] > 1e-9]
    changed.sort(key=lambda i: h_soft[i])
    if changed:
        picks = np.linspace(0.15, 1.0, min(examples, len(changed))) * (len(changed) - 1)
        chosen = list(dict.fromkeys(changed[q] for q in picks.round().astype(int)))
    else:
        chosen = []

    n_ex = max(len(chosen), 1)
    fig = plt.figure(figsize=(max(3.0 * n_ex, 9.0), 7.2))
    grid = fig.add_gridspec(2, 2 * n_ex, height_ratios=[1.0, 1.0], hspace=0.55, wspace=0.6)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.88, bottom=0.09)
    soft_kw = {"color": "tab:blue", "alpha": 0.55, "label": "soft (vote shares)"}
    peak_kw = {"color": "tab:orange", "alpha": 0.55, "label": "PeakL"}

    ax_h = fig.add_subplot(grid[0, :n_ex])
    bins = np.linspace(0.0, np.log(len(emotions)), 25)
    ax_h.hist(h_soft, bins=bins, **soft_kw)
    ax_h.hist(h_peak, bins=bins, **peak_kw)
    ax_h.set_xlabel("entropy of the target (nats)")
    ax_h.set_ylabel("utterances")
    ax_h.set_title(f"entropy: mean {h_soft.mean():.3f} → {h_peak.mean():.3f}")
    ax_h.legend(fontsize="small")

    ax_m = fig.add_subplot(grid[0, n_ex:])
    bins = np.linspace(1.0 / len(emotions), 1.0, 25)
    ax_m.hist(m_soft, bins=bins, **soft_kw)
    ax_m.hist(m_peak, bins=bins, **peak_kw)
    ax_m.set_xlabel("probability of the top class")
    ax_m.set_title(f"top-class probability: mean {m_soft.mean():.3f} → {m_peak.mean():.3f}")
    ax_m.legend(fontsize="small")

    x = np.arange(len(emotions))
    for j, i in enumerate(chosen):
        ax = fig.add_subplot(grid[1, 2 * j : 2 * j + 2])
        ax.bar(x, y_soft[i], width=0.7, color="tab:blue", alpha=0.35)
        for c in x:
            a, b = y_soft[i, c], y_peak[i, c]
            if abs(b - a) > 1e-3:
                ax.annotate(
                    "",
                    xy=(c, b),
                    xytext=(c, a),
                    arrowprops={"arrowstyle": "->", "color": "tab:orange", "lw": 1.6},
                )
        ax.scatter(x, y_peak[i], color="tab:orange", s=14, zorder=3)
        ax.set_xticks(x, [_short(e) for e in emotions], rotation=60, fontsize="x-small")
        ax.set_ylim(0, 1.02)
        ax.set_title(
            "votes " + " ".join(str(int(n)) for n in v[i]) + f"\nH {h_soft[i]:.2f} → {h_peak[i]:.2f}",
            fontsize="small",
        )
        if j == 0:
            ax.set_ylabel("probability")
    if not chosen:
        ax = fig.add_subplot(grid[1, :])
        ax.axis("off")
        ax.text(0.5, 0.5, "every label is one-hot: PeakL leaves them unchanged", ha="center", va="center")
    fig.suptitle(
        f"Training labels before (soft) and after PeakL: {len(v)} utterances, {len(uniq)} distinct vote "
        "vectors\nPeakL: r = tanh(H(y)), y' ∝ max(0, y − r/K) / (1 − r); arrows: soft share → PeakL"
    )
    return fig

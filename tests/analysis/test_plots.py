"""The report's figures: what each one draws is read back from the figure's own lines and points."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.image import imread

from analysis.plots import arm_plot, draw_arms, draw_paired, draw_peakl, paired_plot, peakl_figure
from erc import vocab


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_paired_panels_draw_each_fold_from_baseline_to_treatment():
    treatment = {"acc": {0: 0.7, 1: 0.6, 2: 0.8}, "macro_f1": {0: 0.5, 1: 0.55, 2: 0.45}}
    baseline = {"acc": {0: 0.65, 1: 0.62, 2: 0.7}, "macro_f1": {0: 0.4, 1: 0.5, 2: 0.5}}
    fig = draw_paired(treatment, baseline, "outer", "concat", title="fusion: outer vs concat")
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["acc", "macro_f1"]
    for ax, metric in zip(axes, treatment, strict=True):
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ["fold 0", "fold 1", "fold 2"]
        for line, fold in zip(lines, range(3), strict=True):
            assert list(line.get_xdata()) == [0, 1]
            assert list(line.get_ydata()) == [baseline[metric][fold], treatment[metric][fold]]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["concat", "outer"]
    assert fig.get_suptitle() == "fusion: outer vs concat"


def test_paired_panels_pair_by_key_and_name_repeats():
    # (fold, seed) keys; fold 2 lacks a baseline value: only the keys both sides hold are drawn.
    treatment = {"acc": {(0, "0"): 0.7, (0, "1"): 0.71, (2, "0"): 0.9}}
    baseline = {"acc": {(0, "1"): 0.69, (0, "0"): 0.6}}
    (ax,) = draw_paired(treatment, baseline).axes
    assert [(line.get_label(), list(line.get_ydata())) for line in ax.get_lines()] == [
        ("(fold 0, seed 0)", [0.6, 0.7]), ("(fold 0, seed 1)", [0.69, 0.71])]


def test_arm_figure_places_each_fold_in_every_arm_and_marks_the_means():
    values = {"concat-peakl": {0: 0.5, 1: 0.55, 2: 0.4}, "outer-peakl": {0: 0.6, 1: 0.5}}  # fold 2 missing
    fig = draw_arms(values, "acc")
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["concat-peakl", "outer-peakl"]
    assert ax.get_ylabel() == "acc"
    points = {c.get_label(): c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)}
    assert set(points) == {"fold 0", "fold 1", "fold 2", "mean"}
    # A fold's points: one per arm that has it, at that arm's position (plus its fold's small offset).
    assert np.allclose(points["fold 0"][:, 1], [0.5, 0.6]) and np.allclose(points["fold 2"][:, 1], [0.4])
    assert np.round(points["fold 0"][:, 0]).tolist() == [0, 1] and np.round(points["fold 2"][:, 0]).tolist() == [0]
    # The same fold sits at the same offset in every arm.
    offset = points["fold 1"][:, 0] - np.array([0, 1])
    assert offset[0] == pytest.approx(offset[1])
    assert np.allclose(points["mean"], [[0, np.mean([0.5, 0.55, 0.4])], [1, np.mean([0.6, 0.5])]])


def test_peakl_figure_histograms_count_every_labelled_utterance():
    votes = np.array([[0, 0, 0, 10, 0, 0, 0], [4, 1, 1, 2, 0, 1, 1], [0, 1, 0, 1, 0, 7, 1], [2, 1, 0, 1, 6, 0, 0],
                      [0, 0, 0, 0, 0, 0, 0], [5, 5, 0, 0, 0, 0, 0]])
    fig = draw_peakl(votes)
    entropy_ax, top_ax, *examples = fig.axes
    # Two histograms (soft, PeakL) per panel, each over the 5 utterances that have votes (the empty row is dropped).
    for ax in (entropy_ax, top_ax):
        heights = [sum(p.get_height() for p in c) for c in ax.containers]
        assert heights == [5, 5]
    # PeakL sharpens: the entropy mean drops, the top-class probability mean rises (both in the titles).
    before, after = (float(x) for x in entropy_ax.get_title().split("mean ")[1].split(" → "))
    assert after < before
    before, after = (float(x) for x in top_ax.get_title().split("mean ")[1].split(" → "))
    assert after > before
    # Examples: the ambiguous vote vectors (the one-hot row has nothing to show), one bar per class.
    assert 1 <= len(examples) <= 4
    for ax in examples:
        assert len(ax.patches) == len(vocab.EMOTIONS) and ax.get_title().startswith("votes ")


def test_peakl_figure_of_one_hot_labels_says_so_and_bad_votes_are_refused():
    fig = draw_peakl(np.eye(7, dtype=int)[[0, 3, 3]] * 10)
    assert any("every label is one-hot" in t.get_text() for ax in fig.axes for t in ax.texts)
    with pytest.raises(ValueError, match="votes must be"):
        draw_peakl(np.ones((3, 5)))


def _drawn(path) -> np.ndarray:
    """The PNG's pixels; asserts it is not one flat colour."""
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels[..., :3].std() > 0.05
    return pixels


def test_saved_figures_are_the_drawn_ones(tmp_path):
    treatment, baseline = {"acc": {0: 0.7, 1: 0.6}}, {"acc": {0: 0.65, 1: 0.62}}
    png = paired_plot(treatment, baseline, tmp_path / "paired.png")
    pixels = _drawn(png)
    fig = draw_paired(treatment, baseline)
    assert pixels.shape[1] == round(fig.get_size_inches()[0] * 100)  # drawn at 100 dpi, no tight-bbox cropping
    plt.close(fig)
    arms = arm_plot({"a": {0: 0.5}, "b": {0: 0.6}}, tmp_path / "arms.png", "acc")
    assert _drawn(arms).shape[:2] == (360, round((1.1 * 2 + 2.6) * 100))
    votes = np.array([[4, 1, 1, 2, 0, 1, 1], [0, 1, 0, 1, 0, 7, 1]])
    assert _drawn(peakl_figure(votes, tmp_path / "sub" / "peakl.png")).shape[0] == 720  # makes its directory
    assert plt.get_fignums() == []  # saving closed every figure

"""analysis.robustness: curves per arm, MultiBench's relative and effective robustness, the figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.robustness import (
    curves,
    draw_curves,
    effective_robustness,
    figure_name,
    long_frame,
    relative_robustness,
    robustness_plot,
    robustness_table,
)
from erc import contract as C


def _wide() -> pd.DataFrame:
    """Two arms × 2 folds: 'fragile' loses 0.1 per σ on audio, 'steady' 0.02; text noise costs nothing."""
    rows = []
    for arm, slope in (("steady", 0.02), ("fragile", 0.1)):
        for fold in range(2):
            clean = 0.6 + 0.02 * fold
            row = {C.FOLD: fold, C.SEED: "0", C.ARM: arm, "selected/acc": clean, "selected/epoch": 3,
                   "robust/missing_audio/acc": clean - 0.3, "robust/missing_text/acc": clean - 0.05,
                   "valid/acc": 0.9, "robust/unknown_thing/acc": 0.0}
            for sigma in (0.5, 1.0, 2.0):
                row[f"robust/noise_audio_{sigma:g}/acc"] = clean - slope * sigma
                row[f"robust/noise_text_{sigma:g}/acc"] = clean
            rows.append(row)
    return pd.DataFrame(rows)


def test_long_frame_and_curves():
    long = long_frame(_wide(), ["acc"])
    assert set(long["kind"]) == {"clean", "missing", "noise"} and set(long["metric"]) == {"acc"}
    table = curves(long, "acc")
    assert list(table.columns) == [0.0, 0.5, 1.0, 2.0, "missing"]
    assert table.loc[("fragile", "audio"), 2.0] == pytest.approx(0.61 - 0.2)
    assert table.loc[("steady", "text"), "missing"] == pytest.approx(0.61 - 0.05)
    assert list(table.index) == [("steady", "audio"), ("steady", "text"), ("fragile", "audio"), ("fragile", "text")]


def test_multibench_numbers():
    # a flat curve's relative robustness is its height; a straight fall from 1 to 0 over [0, 2] is 0.5
    assert relative_robustness([0, 0.5, 1, 2], [0.7] * 4) == pytest.approx(0.7)
    assert relative_robustness([0, 1, 2], [1.0, 0.5, 0.0]) == pytest.approx(0.5)
    # effective robustness: the curve against the reference shifted to its clean value
    assert effective_robustness([0.8, 0.7, 0.6], [0.5, 0.4, 0.3]) == pytest.approx(0.0)
    assert effective_robustness([0.8, 0.8, 0.8], [0.5, 0.4, 0.3]) == pytest.approx(0.1 + 0.2)
    assert np.isnan(effective_robustness([0.8, np.nan], [0.5, 0.4]))


def test_robustness_table_ranks_the_steadier_arm_higher():
    long = long_frame(_wide())
    table = robustness_table(long, "acc")
    assert table.attrs["reference"] == "steady"
    audio = table.xs("audio", level="modality")
    assert audio.loc["steady", "relative"] > audio.loc["fragile", "relative"]
    assert audio.loc["steady", "effective"] == pytest.approx(0.0)  # the reference itself
    # fragile loses 0.08 more per σ: at σ = 0.5, 1, 2 that is 0.04 + 0.08 + 0.16 below the shifted reference
    assert audio.loc["fragile", "effective"] == pytest.approx(-0.28)
    assert audio.loc["steady", "relative_norm"] == 1.0 and audio.loc["fragile", "relative_norm"] == 0.0
    assert audio.loc["steady", "missing drop"] == pytest.approx(0.3)
    text = table.xs("text", level="modality")
    assert text["relative"].tolist() == pytest.approx([0.61, 0.61]) and (text["relative_norm"] == 0).all()
    with pytest.raises(ValueError, match="reference"):
        robustness_table(long, "acc", reference="nope")


def test_curves_figure(tmp_path):
    long = long_frame(_wide())
    fig = draw_curves(long, "acc")
    audio_ax = fig.axes[0]
    lines = {line.get_label(): line for line in audio_ax.get_lines() if not line.get_label().startswith("_")}
    assert set(lines) == {"steady", "fragile"}
    np.testing.assert_allclose(lines["fragile"].get_ydata(), [0.61, 0.56, 0.51, 0.41])
    assert [t.get_text() for t in audio_ax.get_xticklabels()][-1] == "missing"
    path = robustness_plot(long, "acc", tmp_path / figure_name("acc"))
    assert path.name == "robustness_acc.png" and path.stat().st_size > 0

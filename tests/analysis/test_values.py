"""Per-fold values from a CSV file: what the reader accepts, what it refuses, and the CLI around it."""

from __future__ import annotations

import pandas as pd
import pingouin as pg
import pytest

import analysis.__main__ as cli
from analysis import values
from analysis.options import Contrast, ReportOptions
from analysis.report import compare_report, sweep_report
from analysis.values import load_values_csv

pytestmark = pytest.mark.filterwarnings("ignore:Wilcoxon")


def write(tmp_path, text: str):
    path = tmp_path / "folds.csv"
    path.write_text(text.strip() + "\n")
    return path


def test_a_researchers_own_factor_and_numeric_factor(tmp_path):
    rows = ["optimizer,lr,fold,acc,n_train,n_valid"]
    for fold in range(4):
        rows += [f"adam,0.001,{fold},{0.60 + 0.01 * fold + 0.02 * (fold % 2):.3f},300,100",
                 f"sgd,0.001,{fold},{0.58 + 0.01 * fold:.3f},300,100"]
    path = write(tmp_path, "\n".join(rows))
    trials = load_values_csv(path, factors=["lr"])
    assert trials.metrics == ["acc"]  # lr is a factor because it was named one; n_train/n_valid are sizes
    contrast = Contrast(factor="optimizer", treatment="adam", baseline="sgd", where={"lr": 0.001})
    text = compare_report(contrast, ReportOptions(values_csv=path, out_dir=tmp_path / "out", echo=False))
    assert "| acc |" in text and "Treatment optimizer=adam, lr=0.001 vs baseline" in text
    assert "n_test/n_train = 0.3333" in text  # from the file's fold sizes, not assumed equal folds
    assert {p.suffix for p in (tmp_path / "out").iterdir()} == {".csv", ".tex", ".md", ".png", ".html"}


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="'fold' must be an integer; bad value on line\\(s\\) 3"):
        load_values_csv(write(tmp_path, "arm,fold,acc\na,0,0.5\na,one,0.6"))
    with pytest.raises(ValueError, match="column 'acc' mixes numbers and text \\(line\\(s\\) 3\\)"):
        load_values_csv(write(tmp_path, "arm,fold,acc\na,0,0.5\na,1,high"))
    with pytest.raises(ValueError, match="no 'fold' column"):
        load_values_csv(write(tmp_path, "arm,acc\na,0.5"))
    with pytest.raises(ValueError, match="no metric columns"):
        load_values_csv(write(tmp_path, "arm,fold\na,0"))


def test_cli_refuses_mlflow_selection_flags_with_a_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["report", "--values-csv", str(values.PAPER_VALUES), "--all-runs"])
    assert exc.value.code == 2 and "drop --all-runs" in capsys.readouterr().err
    assert cli.main(["compare", "--values-csv", str(tmp_path / "none.csv"), "--factor", "a", "--treatment", "x",
                     "--baseline", "y"]) == 2
    assert "values file" in capsys.readouterr().err


def test_report_on_a_file_that_varies_the_fusion_alone(tmp_path, capsys):
    # fold,fusion,acc: no labels column, so no arm is "<fusion>-<labels>"; the report compares the fusions
    # outright (the paper's labels=peakl condition is dropped) and says the labels tables cannot be made.
    rows = ["fold,fusion,acc"]
    outer = [0.61, 0.66, 0.57, 0.63, 0.64]
    concat = [0.60, 0.63, 0.55, 0.62, 0.61]
    rows += [f"{fold},outer,{a}" for fold, a in enumerate(outer)]
    rows += [f"{fold},concat,{a}" for fold, a in enumerate(concat)]
    path = write(tmp_path, "\n".join(rows))
    text = sweep_report(ReportOptions(values_csv=path, out_dir=tmp_path / "out", echo=False))
    assert "arms concat, outer, folds 0, 1, 2, 3, 4" in text
    assert "## fusion: outer vs concat\n" in text and "Treatment outer vs baseline concat" in text
    assert "## labels: peakl vs soft (fusion=outer)" in text and "no run carries the factor 'labels'" in text
    assert "| concat | 5 | 0.6020 ± 0.0311 |" in text  # the per-arm table, one arm per fusion
    table = pd.read_csv(tmp_path / "out" / "fusion_outer_vs_concat.csv", index_col="metric")
    ref = pg.ttest(outer, concat, paired=True).iloc[0]
    assert table.loc["acc", "T"] == pytest.approx(ref["T"], rel=1e-9)
    assert "table labels: peakl vs hard (fusion=outer) skipped" in capsys.readouterr().err


def test_cli_report_on_a_labels_only_file(tmp_path):
    rows = ["fold,labels,acc"] + [f"{f},{lab},{0.5 + 0.01 * f + d}" for f in range(3)
                                  for lab, d in (("peakl", 0.02 + 0.001 * f), ("soft", 0.0), ("hard", -0.01))]
    out = tmp_path / "out"
    assert cli.main(["report", "--values-csv", str(write(tmp_path, "\n".join(rows))), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "## labels: peakl vs soft\n" in text and "## labels: peakl vs hard\n" in text
    assert "## fusion: outer vs concat (labels=peakl)" in text and "no run carries the factor 'fusion'" in text
    assert list(pd.read_csv(out / "arms.csv", index_col="arm").index) == ["hard", "soft", "peakl"]

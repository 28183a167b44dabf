"""Per-fold values from a CSV file: what the reader accepts, what it refuses, and the CLI around it."""

from __future__ import annotations

import pytest

import analysis.__main__ as cli
from analysis import values
from analysis.report import compare_report
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
    text = compare_report("", "optimizer", "adam", "sgd", {"lr": "0.001"}, values_csv=path,
                          out_dir=tmp_path / "out", echo=False)
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
    assert cli.VALUES_CSV_HELP == values.VALUES_CSV_HELP  # the CLI's copy (kept to make --help fast) agrees

"""``python -m analysis``: its help answers before any heavy library loads (checked by what is imported,
not by a timing), and the parsed arguments become one ReportOptions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import analysis.__main__ as cli
from analysis.options import ReportOptions
from tests.sweep_helpers import imported

REPO = Path(__file__).resolve().parents[2]
# What --help must not wait for: each of these takes from a second to tens of seconds to import here.
HEAVY = frozenset({"torch", "transformers", "torchmetrics", "pingouin", "matplotlib", "mlflow", "ray",
                   "pandas", "numpy", "scipy", "sklearn", "umap", "baycomp"})


def _python(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_importing_the_entry_module_loads_nothing_heavy():
    code = ("import sys, json; import analysis, analysis.__main__, analysis.options; "
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(HEAVY)!r})))")
    res = _python("-c", code)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == []


def test_the_importtime_parser_sees_heavy_imports():
    # The check below is only as good as its parser: a run that does import numpy must show it.
    res = _python("-X", "importtime", "-c", "import numpy")
    assert "numpy" in imported(res.stderr)


@pytest.mark.parametrize("verb", [None, *cli.build_parser()._subparsers._group_actions[0].choices])
def test_help_of_every_verb_imports_nothing_heavy(verb):
    res = _python("-X", "importtime", "-m", "analysis", *([verb] if verb else []), "--help")
    assert res.returncode == 0, res.stderr
    assert "usage: python -m analysis" in res.stdout
    assert not imported(res.stderr) & HEAVY, sorted(imported(res.stderr) & HEAVY)
    assert "analysis" in imported(res.stderr)  # the log did record the run's own imports


def test_arguments_become_one_report_options():
    args = cli.build_parser().parse_args(["report", "--experiment", "x", "--sweep", "s", "--metrics", "acc,best/auroc",
                                          "--no-extended", "--rope", "0.01", "--alternative", "greater",
                                          "--no-log", "--out", "o"])
    opts = cli.report_options(args)
    assert opts == ReportOptions(experiment="x", sweep="s", metrics=("acc", "auroc"), extended=False, rope=0.01,
                                 alternative="greater", log_to_mlflow=False, out_dir="o")
    # Every default of the parser is the dataclass's own.
    assert cli.report_options(cli.build_parser().parse_args(["report"])) == ReportOptions()


def test_values_csv_with_a_selection_flag_names_the_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["report", "--values-csv", "f.csv", "--filter", "params.lr = '1'", "--values", "best"])
    assert exc.value.code == 2 and "drop --filter, --values" in capsys.readouterr().err

"""sweeps/settings.py: the resume identity, shared flags and their usage errors."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from sweeps import ablation, search
from sweeps.settings import SweepSettings, load_config_file, settings_from_args
from tests.sweep_helpers import REPO


def test_fingerprint_is_the_resume_identity(tmp_path):
    base = SweepSettings(cache_dir=tmp_path)
    # the same results-defining settings resume the same sweep, whatever the resources or the tracking
    same = SweepSettings(cache_dir=tmp_path / "elsewhere", cpus_per_trial=2, max_concurrent=1, verbose=0,
                         tracking_uri="http://127.0.0.1:5000", experiment="other")
    assert same.fingerprint() == base.fingerprint() and same.sweep_name() == base.sweep_name()
    for change in ({"folds": [0]}, {"labels": ["soft"]}, {"epochs": 3}, {"seed": 1}, {"repeats": 2},
                   {"hparams": {"lr": 0.01}}, {"preset": "paper"}, {"tune_per_arm": 2}, {"data": "/x"},
                   {"identity": {"num_samples": 4}}, {"mode": "finetune"}, {"protocol": "paper"}):
        assert SweepSettings(cache_dir=tmp_path, **change).fingerprint() != base.fingerprint(), change
    assert SweepSettings(cache_dir=tmp_path, name="mine").sweep_name() == "mine"


def test_preset_default_follows_the_data():
    assert SweepSettings().preset == "demo" and SweepSettings(data="/data").preset == "paper"
    assert SweepSettings(data="/data", preset="demo").base_config()["preset"] == "demo"


def test_features_are_extracted_on_the_cluster_a_sweep_joins():
    assert SweepSettings().extract_on == "driver" and SweepSettings(address="auto").extract_on == "cluster"
    assert SweepSettings(address="auto", extract_on="driver").extract_on == "driver"
    args = ablation.parse_args(["--layers", "all", "--extract-on", "cluster"])
    settings = settings_from_args(args, repeats=1, tune_per_arm=0)
    assert (settings.layers, settings.extract_on) == ("all", "cluster")
    assert SweepSettings(layers="all").fingerprint() == SweepSettings().fingerprint()  # the same results


@pytest.mark.parametrize("script", [ablation, search])
@pytest.mark.parametrize("argv, message", [
    (["--folds", "0,7"], "choose from 0,1,2,3,4"),
    (["--folds", "a"], "comma-separated"),
    (["--fusions", "sum"], "choose from concat,outer"),
    (["--labels", "onehot"], "choose from hard,soft,peakl"),
    (["--cpus-per-trial", "0"], "must be > 0"),
    (["--layers", "middle"], "choose from 'last', 'all'"),
    (["--extract-on", "gpu"], "choose from 'driver', 'cluster'"),
    (["--gpus-per-trial", "-1"], "must be >= 0"),
    (["--gpus-per-trial", "half"], "expected 'auto' or a number"),
    (["--mode", "frozen"], "invalid choice"),
    (["--protocol", "lightning"], "invalid choice"),
    (["--epochs", "0"], "must be > 0"),
    (["--preset", "huge"], "invalid choice"),
])
def test_bad_values_are_usage_errors(script, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_smoke_test_and_fault_injection_come_from_the_command_line_and_environment(monkeypatch):
    args = ablation.parse_args(["--smoke-test"])
    settings = settings_from_args(args)
    assert settings.folds == [0] and settings.epochs == 1 and settings.preset == "demo"
    assert settings.fail_once is None
    monkeypatch.setenv("ERC_FAIL_ONCE", "fold0-outer")
    assert settings_from_args(ablation.parse_args([])).fail_once == "fold0-outer"


def test_both_scripts_share_flag_names_and_hide_fault_injection():
    helps = {}
    for script in ("ablation.py", "search.py"):
        proc = subprocess.run([sys.executable, str(REPO / "sweeps" / script), "--help"], capture_output=True,
                              text=True, check=False)
        assert proc.returncode == 0
        helps[script] = proc.stdout
        assert "fail-once" not in proc.stdout and "ERC_FAIL_ONCE" not in proc.stdout
    for flag in ("--folds", "--fusions", "--labels", "--preset", "--epochs", "--smoke-test", "--cache-dir", "--data"):
        assert all(flag in text for text in helps.values()), flag


def test_config_file_is_checked_against_the_run_config(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("lr: 0.002\nfusion: concat\narms:\n  outer-peakl: {dim: 32}\n")
    top, arms = load_config_file(good)
    assert top == {"lr": 0.002} and arms == {"outer-peakl": {"dim": 32}}
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 0.1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        load_config_file(bad)
    with pytest.raises(SystemExit):
        ablation.parse_args(["--config", str(bad)])
    finetune_only = tmp_path / "ft.yaml"
    finetune_only.write_text("max_tokens: 64\n")
    with pytest.raises(SystemExit):  # a cached sweep cannot honour it: a usage error, not a failed trial
        ablation.parse_args(["--config", str(finetune_only)])
    assert ablation.parse_args(["--config", str(finetune_only), "--mode", "finetune"]).hparams[0] == {"max_tokens": 64}
    assert isinstance(ablation.parse_args([]), argparse.Namespace)


def test_protocol_values_sit_between_the_preset_and_explicit_values(tmp_path):
    paper = SweepSettings(cache_dir=tmp_path, protocol="paper")
    base = paper.base_config()
    assert base["focal"] == "batch" and base["epochs"] == 30 and base["valid_ties"] == "excluded"
    assert "clean_text" not in base and "encoder_lr" not in base  # cached mode: only what applies
    finetune = SweepSettings(cache_dir=tmp_path, protocol="paper", mode="finetune", data="/data",
                             epochs=4, hparams={"batch_size": 2}).base_config()
    assert finetune["clean_text"] is False and finetune["encoder_lr"] == 1e-5
    assert finetune["epochs"] == 4 and finetune["batch_size"] == 2  # --epochs and --config win
    demo = SweepSettings(cache_dir=tmp_path, protocol="paper", mode="finetune").base_config()
    assert demo["epochs"] == 2 and demo["batch_size"] == 8  # the finetune demo preset: few epochs
    assert SweepSettings(cache_dir=tmp_path, mode="finetune").epoch_checkpoints
    assert not SweepSettings(cache_dir=tmp_path).epoch_checkpoints
    assert SweepSettings(cache_dir=tmp_path, fail_once="fold0@2").epoch_checkpoints
    with pytest.raises(ValueError, match="@<epoch>"):
        SweepSettings(cache_dir=tmp_path, fail_once="fold0@two")
    args = ablation.parse_args(["--mode", "finetune", "--protocol", "paper", "--gpus-per-trial", "0.5"])
    settings = settings_from_args(args)
    assert (settings.mode, settings.protocol, settings.gpus_per_trial) == ("finetune", "paper", 0.5)
    assert settings_from_args(ablation.parse_args([])).gpus_per_trial == "auto"

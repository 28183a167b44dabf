"""sweeps/settings.py: the resume identity, the flags derived from the settings' fields, usage errors."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from erc import vocab
from sweeps import ablation, search
from sweeps.settings import SMOKE, SweepSettings, flag_fields, load_config_file, settings_from_args
from tests.sweep_helpers import REPO

# The fingerprint the settings had before their flags were derived from the fields (computed with that
# code: `SweepSettings().fingerprint()`, and with the second set of values below). Sweep names end with
# it and a rerun finds its sweep by name, so an interrupted sweep started before a refactoring must still
# resume after it: a change of these values orphans every sweep already on disk.
DEFAULT_FINGERPRINT = "9e5874fe"
SMOKE_FINGERPRINT = "b23006ae"
CHANGED = {"data": "/d", "folds": [0, 2], "fusions": ["outer"], "labels": ["soft"], "epochs": 3,
           "hparams": {"lr": 0.01}, "arm_hparams": {"outer-soft": {"dim": 32}}, "seed": 1, "repeats": 2,
           "tune_per_arm": 2, "identity": {"num_samples": 4}, "mode": "finetune", "protocol": "paper",
           "preset": "demo", "audio_encoder": "a", "text_encoder": "t"}
CHANGED_FINGERPRINT = "b356a54d"


def test_fingerprints_of_sweeps_started_before_stay_the_same():
    assert SweepSettings().fingerprint() == DEFAULT_FINGERPRINT
    assert SweepSettings().sweep_name() == f"ablation-demo-5folds-concat+outer-hard+soft+peakl-{DEFAULT_FINGERPRINT}"
    assert settings_from_args(ablation.parse_args([])).fingerprint() == DEFAULT_FINGERPRINT
    assert settings_from_args(ablation.parse_args(["--smoke-test"])).fingerprint() == SMOKE_FINGERPRINT
    assert SweepSettings(**CHANGED).fingerprint() == CHANGED_FINGERPRINT


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
    (["--fusions", "sum"], "choose from " + ",".join(vocab.fusion_names()) + " (or 'all')"),
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
    with_arms = ablation.parse_args(["--config", str(good)])
    assert settings_from_args(with_arms).hparams == {"lr": 0.002}
    assert settings_from_args(with_arms).arm_hparams == {"outer-peakl": {"dim": 32}}
    assert ablation.parse_args(["--config", str(finetune_only), "--mode", "finetune"]).hparams == {"max_tokens": 64}
    # no --config: no hyper-parameters, whatever an earlier parse held
    assert settings_from_args(ablation.parse_args([])).hparams == {}


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


def test_the_flags_defaults_are_the_settings_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv(vocab.CACHE_ENV, str(tmp_path))
    # every field a flag leaves alone keeps its dataclass default: the parser retypes none of them
    assert settings_from_args(ablation.parse_args([])) == SweepSettings()
    searched = settings_from_args(search.parse_args([]), identity={})
    assert searched == SweepSettings(**search.DEFAULTS)
    assert set(search.DEFAULTS["fusions"]) <= set(vocab.fusion_names())
    assert set(search.DEFAULTS["labels"]) <= set(vocab.LABEL_ARMS)


def _value_for(f: dataclasses.Field) -> tuple[list[str], object]:
    """A command-line value for a flag field, and the value it must give the setting."""
    kwargs = f.metadata["argparse"]
    if kwargs.get("action") == "count":
        return [], 2
    if "choices" in kwargs:
        return [kwargs["choices"][-1]], kwargs["choices"][-1]
    if f.name in ("folds", "fusions", "labels"):
        default = SweepSettings.__dataclass_fields__[f.name].default_factory()
        return [",".join(map(str, default[::-1]))], default[::-1]
    return {"epochs": (["7"], 7), "seed": (["3"], 3), "repeats": (["2"], 2), "tune_per_arm": (["4"], 4),
            "cpus_per_trial": (["0.5"], 0.5), "gpus_per_trial": (["0.25"], 0.25), "max_concurrent": (["3"], 3),
            "max_failures": (["5"], 5), "cache_dir": (["/tmp/elsewhere"], "/tmp/elsewhere")}.get(f.name, (["x"], "x"))


@pytest.mark.parametrize("script", [ablation, search])
def test_each_flag_is_a_field_and_sets_it(script, capsys):
    name = script.__name__.rsplit(".", 1)[1]
    fields = flag_fields(name)
    assert {f.name for f in fields} >= {"folds", "fusions", "epochs", "cache_dir", "verbose"}
    assert ("repeats" in {f.name for f in fields}) is (name == "ablation")  # the grid's own flags
    with pytest.raises(SystemExit):
        script.parse_args(["--help"])
    help_text = capsys.readouterr().out
    for f in fields:
        option = (f.metadata["flags"] or ("--" + f.name.replace("_", "-"),))[-1]
        assert option in help_text, option
        given, expected = _value_for(f)
        flags = [option] * expected if f.name == "verbose" else [option, *given]
        settings = settings_from_args(script.parse_args(flags))
        value = getattr(settings, f.name)
        assert (str(value) if f.name == "cache_dir" else value) == expected, f.name


def test_fusions_take_every_registered_head_or_all(capsys):
    assert settings_from_args(ablation.parse_args(["--fusions", "all"])).fusions == list(vocab.fusion_names())
    last = vocab.fusion_names()[-1]
    assert settings_from_args(ablation.parse_args(["--fusions", last])).fusions == [last]
    with pytest.raises(SystemExit):
        ablation.parse_args(["--fusions", "concat,nope"])
    err = capsys.readouterr().err
    assert "['nope']" in err and all(name in err for name in vocab.fusion_names())


def test_the_default_grid_is_the_papers_and_control_is_a_chosen_fusion(capsys):
    default = settings_from_args(ablation.parse_args([]))
    assert default.fusions == list(vocab.DEFAULT_FUSIONS) and default.control == vocab.DEFAULT_FUSIONS[0]
    chosen = settings_from_args(ablation.parse_args(["--fusions", "all", "--control", "outer"]))
    assert chosen.control == "outer"
    # the control names the report's baseline, not the results: the sweep (and its resume) is the same
    assert chosen.fingerprint() == settings_from_args(ablation.parse_args(["--fusions", "all"])).fingerprint()
    with pytest.raises(SystemExit):
        ablation.parse_args(["--fusions", "audio,text,tfn"])  # the default control concat is not among them
    assert "--control concat is not among --fusions audio,text,tfn" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not among"):
        SweepSettings(fusions=["audio", "text", "tfn"], control="outer")
    assert SweepSettings(fusions=["audio", "text"], control="outer").control == "outer"  # two arms: no Friedman


def test_smoke_test_and_quiet_are_shortcuts_for_settings():
    smoke = settings_from_args(ablation.parse_args(["--smoke-test", "--epochs", "9"]))
    assert {k: getattr(smoke, k) for k in SMOKE} == SMOKE  # the smoke test wins over single flags
    assert settings_from_args(ablation.parse_args(["-q"])).verbose == -1
    with pytest.raises(SystemExit):
        ablation.parse_args(["-q", "-v"])


HEAVY = ("torch", "ray", "mlflow", "pingouin", "matplotlib", "transformers", "torchmetrics", "analysis",
         "optuna", "pandas", "datasets", "torchaudio")


def test_entry_scripts_parse_before_any_heavy_library_loads():
    # --help and usage errors come at once: the entry modules, the settings and the parsers import none
    # of the libraries a sweep needs (they load after the arguments are parsed)
    code = """
import contextlib, io, json, sys
from sweeps import ablation, search, settings
for script in (ablation, search):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        script.parse_args(["--help"])
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert "sweeps" in loaded and not loaded & set(HEAVY), loaded & set(HEAVY)

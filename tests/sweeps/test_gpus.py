"""sweeps/gpus.py: --gpus-per-trial auto on a real (GPU-less) Ray runtime; the probe runs a trial's step."""

from __future__ import annotations

import numpy as np
import pytest
import ray

from sweeps.gpus import probe_configs, probe_sample, resolve_gpus_per_trial, run_probe
from sweeps.prepare import Prepared
from sweeps.settings import SweepSettings
from tests.synthetic import synthetic_features


def _prepared(table) -> Prepared:
    return Prepared(table=table, corpus_name="synthetic", audio_encoder="a", text_encoder="t", feature_dir=None,
                    excluded_csv=None)


def test_auto_means_zero_without_a_gpu_and_an_explicit_fraction_wins(tmp_path):
    ray.init(address="local", num_cpus=1, num_gpus=0, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        prepared = _prepared(synthetic_features(n=50))
        assert resolve_gpus_per_trial(SweepSettings(cache_dir=tmp_path), prepared, {}) == 0.0
        assert resolve_gpus_per_trial(SweepSettings(cache_dir=tmp_path, gpus_per_trial=0.5), prepared, {}) == 0.5
    finally:
        ray.shutdown()


def test_probe_takes_the_largest_batch_and_the_longest_inputs(demo_root, demo_encoders, tmp_path):
    settings = SweepSettings(cache_dir=tmp_path, fusions=["concat", "outer"],
                             arm_hparams={"outer-peakl": {"batch_size": 48}})
    configs = probe_configs(settings)
    assert [c["fusion"] for c in configs] == ["concat", "outer"] and {c["batch_size"] for c in configs} == {48}

    from erc.data import load_corpus
    from erc.inputs import build_inputs

    table, _ = build_inputs(load_corpus(demo_root, verbose=False), *demo_encoders, tmp_path / "in", progress=False)
    sample = probe_sample(table, 0, 4)
    longest = np.sort(table.wave_len[table.fold != 0])[-4:]
    assert sorted(sample.wave_len[sample.fold != 0]) == sorted(longest) and (sample.fold == 0).sum() == 4
    flat = {**SweepSettings(cache_dir=tmp_path, mode="finetune", protocol="paper").base_config(),
            "fusion": "outer", "labels": "soft", "batch_size": 4}
    result = run_probe(flat, sample, 0, {"mode": "finetune", "audio_encoder": str(demo_encoders[0]),
                                         "text_encoder": str(demo_encoders[1])}, device="cpu")
    assert result["rows"] == 4 and np.isfinite(result["loss"])


@pytest.mark.parametrize("fusion", ["concat", "outer"])
def test_probe_of_a_cached_trial(fusion, tmp_path):
    table = synthetic_features(n=120)
    flat = {**SweepSettings(cache_dir=tmp_path, preset="paper").base_config(), "fusion": fusion, "labels": "soft",
            "batch_size": 4}
    result = run_probe(flat, probe_sample(table, 0, 4), 0, {}, device="cpu")
    assert result["rows"] == 4 and result["peak_mb"] is None

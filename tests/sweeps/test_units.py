"""The extraction job's reading tasks: what they pack, and what their processes must not import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from erc.audio import load_audio
from sweeps.units import read_units
from tests.sweep_helpers import imported

REPO = Path(__file__).resolve().parents[2]


def test_importing_the_reading_tasks_module_imports_neither_torch_nor_transformers():
    # Ray imports the task's module in each reading process: torch there would be seconds of CPU per process
    run = subprocess.run([sys.executable, "-X", "importtime", "-c", "import sweeps.units"], cwd=REPO,
                         capture_output=True, text=True, timeout=120, check=True)
    assert {"numpy", "soundfile", "erc"} <= imported(run.stderr)
    assert not imported(run.stderr) & {"torch", "torchaudio", "transformers", "ray"}


def test_reading_audio_at_another_rate_imports_no_torch(tmp_path):
    # a 44.1 kHz stereo WAV (as a tenth of the demo corpus is) is resampled in the reading process itself
    path = tmp_path / "hi_fi.wav"
    sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, (44100, 2)).astype(np.float32), 44100)
    batch = {"kind": ["audio"], "rows": [np.array([0], np.int64).tobytes()], "inputs": [json.dumps([str(path)])]}
    script = ("from sweeps.units import read_units; "
              f"print(len(read_units({batch!r}, max_seconds=7.0, sample_rate=16000)['payload'][0]) // 4)")
    run = subprocess.run([sys.executable, "-X", "importtime", "-c", script], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=True)
    assert run.stdout.strip() == "16000"  # one second, resampled to 16 kHz
    assert not imported(run.stderr) & {"torch", "torchaudio"}


def test_read_units_packs_each_bucket_as_the_driver_reads_it(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, (seconds, rate) in enumerate(((1.0, 16000), (8.0, 16000), (0.5, 8000))):  # a long one, another rate
        path = tmp_path / f"u{i}.wav"
        sf.write(path, rng.uniform(-0.5, 0.5, (int(seconds * rate), 2)).astype(np.float32), rate)
        paths.append(str(path))
    rows = np.array([4, 1, 7], np.int64).tobytes()
    batch = {"kind": np.array(["audio", "text"], dtype=object), "rows": np.array([rows, b"r"], dtype=object),
             "inputs": np.array([json.dumps(paths), json.dumps(["안녕", "hi"], ensure_ascii=False)], dtype=object)}
    out = read_units(batch, max_seconds=7.0, sample_rate=16000)
    assert list(out["kind"]) == ["audio", "text"] and out["rows"][0] == rows
    lengths = np.frombuffer(out["lengths"][0], np.int64)
    waves = np.split(np.frombuffer(out["payload"][0], np.float32), np.cumsum(lengths)[:-1])
    expected = [load_audio(p, 7.0, 16000) for p in paths]
    assert list(lengths) == [16000, 7 * 16000, 8000]  # cropped at 7 s; 8 kHz resampled to 16 kHz
    for wave, want in zip(waves, expected, strict=True):
        np.testing.assert_array_equal(wave, want)
    assert json.loads(out["payload"][1].decode()) == ["안녕", "hi"] and out["lengths"][1] == b""

"""erc.audio: any WAV → mono float32 at 16 kHz, cropped to the limit (DESIGN §2, §4)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from erc.audio import audio_samples, load_audio, resample


def _tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return np.sin(2 * np.pi * freq * t)


def test_stereo_44k_is_mixed_to_mono_resampled_to_16k_and_cropped(tmp_path):
    # Left and right carry the same tone at different gains: the mono mix is 0.4 × tone.
    tone = _tone(9.0, 44100)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([0.5 * tone, 0.3 * tone], axis=1), 44100, subtype="PCM_16")

    wave = load_audio(path, max_seconds=7.0)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert len(wave) == 7 * 16000  # cropped to 7 s at the new rate
    expected = 0.4 * _tone(7.0, 16000)
    inner = slice(200, len(wave) - 200)  # the resampler's filter edges
    assert np.abs(wave[inner] - expected[inner]).max() < 5e-3
    # A 44.1 kHz wave not resampled would be 2.76× too long and the tone would not line up.
    assert np.corrcoef(wave[inner], expected[inner])[0, 1] > 0.999


def test_no_crop_keeps_whole_file_and_short_files_are_not_padded(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, 0.2 * _tone(8.5, 22050), 22050)
    assert len(load_audio(path, max_seconds=None)) == pytest.approx(8.5 * 16000, abs=2)

    short = tmp_path / "short.wav"
    sf.write(short, 0.2 * _tone(1.25, 16000), 16000)
    assert len(load_audio(short, max_seconds=7.0)) == 20000


def test_16k_mono_passes_through_unchanged(tmp_path):
    samples = (np.random.default_rng(0).uniform(-0.5, 0.5, 16000 * 3)).astype(np.float32)
    path = tmp_path / "mono.wav"
    sf.write(path, samples, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path, max_seconds=2.0), samples[:32000])


@pytest.mark.parametrize(("rate", "channels", "seconds"), [(16000, 1, 3.0), (44100, 2, 2.3), (8000, 1, 9.1),
                                                           (48000, 2, 7.0)])
def test_header_length_matches_decoded_length(tmp_path, rate, channels, seconds):
    # audio_samples sorts utterances into length buckets without decoding them.
    n = int(seconds * rate)
    data = np.zeros((n, channels), dtype=np.float32)
    path = tmp_path / f"{rate}_{channels}.wav"
    sf.write(path, data, rate)
    for limit in (7.0, None):
        assert audio_samples(path, limit) == len(load_audio(path, limit))


@pytest.mark.parametrize(("orig", "new", "n"), [(44100, 16000, 7 * 44100 + 1), (22050, 16000, 3 * 22050 + 7),
                                                (48000, 16000, 100_001), (8000, 16000, 12_345), (16000, 44100, 5000),
                                                (11025, 16000, 3)])
def test_resample_is_torchaudios_resample(orig, new, n):
    # the field's resampler is the reference; numpy's float32 sums and torch's conv1d round differently
    import torch
    import torchaudio.functional as AF

    wave = np.random.default_rng(n).uniform(-1, 1, n).astype(np.float32)
    ours = resample(wave, orig, new)
    theirs = AF.resample(torch.from_numpy(wave), orig, new).numpy()
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=5e-5)
    assert np.abs(theirs).max() > 0.5  # not vacuous: a real signal came out

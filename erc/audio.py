"""Reading utterance audio: any WAV → mono float32 at the encoder's rate, cropped (DESIGN §2, §4).

``soundfile`` reads the file and :func:`resample` converts the rate: torchaudio's resampler, the field's
default, in numpy. torchaudio's own ``load`` is not used because torchaudio 2.9 routes it through
TorchCodec + FFmpeg, and its ``resample`` is not called because it needs torch: seconds of CPU in every
process that only reads audio (the extraction job's reading tasks).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
MAX_SECONDS = 7.0  # the paper crops audio at 7 s


def load_audio(path: str | Path, max_seconds: float | None = MAX_SECONDS,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Return the first ``max_seconds`` of ``path`` as a 1-D float32 array at ``sample_rate``.

    Channels are averaged to mono. ``max_seconds=None`` keeps the whole file.
    """
    info = sf.info(str(path))
    frames = -1
    if max_seconds is not None:
        # Read only what survives the crop (+1 source frame so the resampler sees the same
        # neighbourhood at the cut); the exact crop happens after resampling.
        frames = min(info.frames, math.ceil(max_seconds * info.samplerate) + 1)
    data, rate = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    wave = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if rate != sample_rate and len(wave):
        wave = resample(wave, rate, sample_rate)
    if max_seconds is not None:
        wave = wave[: round(max_seconds * sample_rate)]
    return np.ascontiguousarray(wave, dtype=np.float32)


def resample(wave: np.ndarray, orig_freq: int, new_freq: int, *, lowpass_filter_width: int = 6,
             rolloff: float = 0.99) -> np.ndarray:
    """``torchaudio.functional.resample(wave, orig_freq, new_freq)`` (its default ``sinc_interp_hann``) in
    numpy: the same windowed-sinc kernel, built the same way in float64 and applied in float32, so the
    result is torchaudio's to float32 rounding (tests/erc/test_audio.py compares them).

    With both rates divided by their gcd, output sample ``j`` of each block of ``new_freq`` is a dot product
    of the kernel's row ``j`` with the input from ``orig_freq`` samples further on per block.
    """
    gcd = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // gcd, int(new_freq) // gcd
    if orig == new:
        return wave
    kernel, width = _sinc_kernel(orig, new, lowpass_filter_width, rolloff)  # (K, new)
    padded = np.pad(np.asarray(wave, np.float32), (width, width + orig))
    frames = np.lib.stride_tricks.sliding_window_view(padded, kernel.shape[0])[::orig]  # (blocks, K)
    out = (frames @ kernel).reshape(-1)  # (blocks, new) → time
    return out[: math.ceil(new * len(wave) / orig)]


@functools.lru_cache(maxsize=8)  # a corpus has a handful of rates; building one costs more than applying it
def _sinc_kernel(orig: int, new: int, lowpass_filter_width: int, rolloff: float) -> tuple[np.ndarray, int]:
    """torchaudio's ``_get_sinc_resample_kernel`` for gcd-reduced rates, transposed: (K, new) float32, and its
    half-width in input samples."""
    base = min(orig, new) * rolloff  # below both Nyquist frequencies: the anti-aliasing low-pass
    width = math.ceil(lowpass_filter_width * orig / base)
    # float32 first, as torchaudio computes this term, then float64 with the rest
    t = (np.arange(0, -new, -1, dtype=np.float32) / new).astype(np.float64)[:, None] \
        + np.arange(-width, width + orig, dtype=np.float64)[None, :] / orig          # (new, K)
    t = np.clip(t * base, -lowpass_filter_width, lowpass_filter_width)
    window = np.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t *= math.pi
    sinc = np.sin(t) / np.where(t == 0, 1.0, t)
    kernel = np.where(t == 0, 1.0, sinc) * window * (base / orig)
    kernel = np.ascontiguousarray(kernel.T, np.float32)
    kernel.flags.writeable = False  # shared by every call
    return kernel, width


def audio_samples(path: str | Path, max_seconds: float | None = MAX_SECONDS,
                  sample_rate: int = SAMPLE_RATE) -> int:
    """Length in samples that :func:`load_audio` will return, from the header only (no decoding).

    Used to sort utterances into length buckets before any audio is read.
    """
    info = sf.info(str(path))
    n = math.ceil(info.frames * sample_rate / info.samplerate)
    if max_seconds is not None:
        n = min(n, round(max_seconds * sample_rate))
    return n

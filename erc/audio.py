"""Reading utterance audio: any WAV → mono float32 at the encoder's rate, cropped (DESIGN §2, §4).

``soundfile`` reads the file and ``torchaudio.functional.resample`` converts the rate; torchaudio's
own ``load`` is not used because torchaudio 2.9 routes it through TorchCodec + FFmpeg.
"""

from __future__ import annotations

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
        # only here: a process that reads audio at the encoder's rate (Ray Data's reading tasks) need not
        # import torch, seconds of CPU per process
        import torch
        import torchaudio.functional as AF

        wave = AF.resample(torch.from_numpy(np.ascontiguousarray(wave)), rate, sample_rate).numpy()
    if max_seconds is not None:
        wave = wave[: round(max_seconds * sample_rate)]
    return np.ascontiguousarray(wave, dtype=np.float32)


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

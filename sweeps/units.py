"""What the extraction job's reading tasks run (sweeps.extract): WAVs decoded and packed on the
driver's node.

A module of its own because Ray imports a task's module in every process that runs it: this one needs
numpy and soundfile, not torch or transformers (``sweeps.extract`` imports both, seconds of CPU in each
reading process of every extraction).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from erc.audio import load_audio


def column(values: list[Any]) -> np.ndarray:
    """A Ray Data column of bytes/str cells, never coerced to a numeric array."""
    cells = np.empty(len(values), dtype=object)
    cells[:] = values
    return cells


def read_units(batch: Mapping[str, np.ndarray], max_seconds: float | None, sample_rate: int) -> dict[str, np.ndarray]:
    """On the driver's node: each audio unit's WAVs decoded and cropped as the driver would
    (erc.audio.load_audio), packed as one float32 buffer + lengths; text units pass through."""
    out: dict[str, list] = {"kind": [], "rows": [], "payload": [], "lengths": []}
    for kind, rows, inputs in zip(batch["kind"], batch["rows"], batch["inputs"], strict=True):
        if kind == "audio":
            waves = [load_audio(path, max_seconds, sample_rate) for path in json.loads(inputs)]
            payload = np.concatenate(waves).astype(np.float32).tobytes()
            lengths = np.array([len(w) for w in waves], np.int64).tobytes()
        else:
            payload, lengths = str(inputs).encode(), b""
        for key, value in zip(out, (str(kind), rows, payload, lengths), strict=True):
            out[key].append(value)
    return {key: column(values) for key, values in out.items()}

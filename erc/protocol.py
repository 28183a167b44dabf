"""Training protocols: named bundles of ordinary config keys (DESIGN §11).

``default`` is the choices of DESIGN §3–§5. ``paper`` is the original code's recipe, read from its
latest commit: both encoders fine-tuned (1e-5) with the head (1e-4), AdamW (eps 1e-8, weight decay
1e-6), cosine warm restarts every 500 steps (×2, down to 1e-7) stepped per optimisation step, batch
8, gradient clipping at 1, at most 30 epochs with early stopping after 5 without a better validation
accuracy, focal loss (γ = 2) on the batch-mean cross-entropy, raw transcripts cut at 64 tokens, audio
zero-padded or cropped to 7 s with an all-ones mask, the plain ``a' ⊗ t'`` on unstandardised inputs,
tied utterances out of every validation metric, the original data selection, and the epoch chosen
(and early stopping driven) on the held-out fold itself (``select_on='valid'``; the default chooses on
a dev split carved from the training sessions, DESIGN §14).

Every item is its own flat config key, so a sweep can vary any one of them; :data:`PROTOCOLS` is the
one place that names their values. Keys that only mean something when the encoders are trained
(:data:`FINETUNE_ONLY`) are left out of a protocol in ``cached`` mode, and a cached run that sets one
is an error: the cached vectors were computed from cleaned text and unpadded audio, whatever a key says.

The paper's data selection (:func:`erc.data.paper_selection.paper_exclusions`, which reads the raw
annotation files) is a list of segment ids with reasons; a run with ``data_selection='paper'`` leaves
those rows out of training and validation (:func:`select_rows`), and the sweep records them beside
the reader's own exclusions.

Imports neither torch nor the data readers, so argument parsers can list protocols and modes cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

from erc.vocab import DEFAULT_SELECT_ON, MODES, SELECT_ON

SelectOn = Literal[SELECT_ON]  # type: ignore[valid-type]


@dataclass(frozen=True, kw_only=True)
class ProtocolConfig:
    """Data, input and evaluation items of a protocol (training items live in the other components)."""

    data_selection: Literal["all", "paper"] = "all"  # paper: the original code's dropped rows and scripts
    valid_ties: Literal["regression", "excluded"] = "regression"  # excluded: ties out of every valid metric
    # the epoch (and early stopping) is chosen on a dev set carved from the training sessions, or, the
    # paper's way, on the held-out fold that is then reported (erc.table.Rows.split_for)
    select_on: SelectOn = DEFAULT_SELECT_ON
    clean_text: bool = True  # finetune mode: False feeds the raw transcript (lines joined by a space)
    max_tokens: int = 0  # finetune mode: cut token sequences to this many (0 = the encoder's own limit)
    audio_padding: Literal["bucket", "fixed"] = "bucket"  # finetune mode: fixed = zero-pad to 7 s, mask all ones

    def __post_init__(self) -> None:
        if self.max_tokens < 0 or 0 < self.max_tokens < 3:
            raise ValueError(f"max_tokens must be 0 (no limit) or >= 3, got {self.max_tokens}")


# The keys whose values only act on encoders or their inputs: cached vectors cannot honour them.
FINETUNE_ONLY = ("encoder_lr", "freeze_cnn", "grad_checkpointing", "clean_text", "max_tokens", "audio_padding")

PROTOCOLS: dict[str, dict[str, Any]] = {
    "default": {},
    "paper": {
        # optimisation
        "lr": 1e-4, "encoder_lr": 1e-5, "adam_eps": 1e-8, "weight_decay": 1e-6, "batch_size": 8, "grad_clip": 1.0,
        "scheduler": "cosine_restarts", "restart_steps": 500, "restart_mult": 2, "min_lr": 1e-7,
        "epochs": 30, "patience": 5, "select_metric": "acc", "precision": "fp32", "freeze_cnn": False,
        # loss
        "focal": "batch", "focal_gamma": 2.0, "cls_coef": 0.7,
        # inputs and head
        "clean_text": False, "max_tokens": 64, "audio_padding": "fixed", "append_one": False, "standardise": False,
        # data and evaluation
        "data_selection": "paper", "valid_ties": "excluded",
        # selection: the original code picks its epoch and stops early on the fold it reports
        "select_on": "valid",
    },
}


def protocol_values(name: str, mode: str) -> dict[str, Any]:
    """The flat config values of protocol ``name`` that apply in ``mode`` (cached or finetune)."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose from {sorted(PROTOCOLS)}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {list(MODES)}")
    values = dict(PROTOCOLS[name])
    return values if mode == "finetune" else {k: v for k, v in values.items() if k not in FINETUNE_ONLY}


def check_cached(flat: Mapping[str, Any]) -> None:
    """A cached run must leave the finetune-only keys at their defaults (they could not act)."""
    # here, not at the top: erc.optim imports torch, and only this check needs its defaults
    from erc.optim import OptimConfig

    own = {f.name: f.default for cls in (OptimConfig, ProtocolConfig) for f in fields(cls)}
    changed = sorted(k for k in FINETUNE_ONLY if k in flat and flat[k] != own[k])
    if changed:
        raise ValueError(f"{changed} act on the encoders or their inputs and apply only in finetune mode; "
                         "cached features were computed from cleaned text and unpadded audio")


def select_rows(rows: Any, data_selection: str, excluded: np.ndarray | None) -> Any:
    """``rows`` (a table with ``segment_id`` and ``subset``) without the protocol's excluded ids."""
    if data_selection == "all":
        return rows
    if excluded is None:
        raise ValueError("data_selection='paper' needs the paper protocol's excluded segment ids "
                         "(erc.data.paper_selection.paper_exclusions)")
    return rows.subset(~np.isin(rows.segment_id, np.asarray(excluded, dtype=str)))


def join_lines(text: str) -> str:
    """A raw transcript as the original code fed it: its lines joined by single spaces."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def __getattr__(name: str) -> Any:
    # paper_exclusions moved to erc.data.paper_selection; importing it from here still works, loaded on
    # first use so that this module stays free of torch and the data readers
    if name == "paper_exclusions":
        from erc.data.paper_selection import paper_exclusions

        return paper_exclusions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

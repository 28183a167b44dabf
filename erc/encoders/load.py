"""Loading an encoder from a local directory (anything saved with ``save_pretrained``) or a hub id,
with one clear error when it is neither here nor reachable (this machine may be offline)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from erc.encoders.identity import AUDIO_POOLING, TEXT_POOLING, looks_like_path, source_identity
from erc.encoders.models import AudioEncoder, TextEncoder, as_device
from erc.vocab import PAPER_AUDIO_ENCODER, PAPER_TEXT_ENCODER

AudioArg = str | Path | AudioEncoder
TextArg = str | Path | TextEncoder


class EncoderNotFoundError(OSError):
    """The encoder is neither a local model directory nor reachable on / cached from the hub."""


def _offline_message(kind: str, source: str, flag: str, cause: BaseException | None) -> str:
    processor = "AutoFeatureExtractor" if kind == "audio" else "AutoTokenizer"
    files = "feature-extractor" if kind == "audio" else "tokenizer"
    paper = PAPER_AUDIO_ENCODER if kind == "audio" else PAPER_TEXT_ENCODER
    if looks_like_path(source) or Path(source).expanduser().exists():
        what = (f"no {kind} encoder at {source!r}: expected a directory written by save_pretrained "
                f"(config.json, the weights and the {files} files). Models cannot be downloaded while "
                "this machine is offline, so encoders load from local copies")
        hub_id = paper
    else:
        what = (f"the {kind} encoder {source!r} is not a local directory and not in the local Hugging Face "
                "cache, and the hub cannot be reached: this machine is offline")
        hub_id = source
    return (
        f"{what}. To use a local copy, on a machine with internet run "
        f"`AutoModel.from_pretrained({hub_id!r}).save_pretrained(DIR)` and "
        f"`{processor}.from_pretrained({hub_id!r}).save_pretrained(DIR)`, copy DIR here and pass {flag} DIR"
        + ("" if hub_id == paper else f" (the paper's {kind} encoder is {paper})")
        + ". HF_HUB_OFFLINE=1 skips hub look-ups."
        + (f" [{type(cause).__name__}: {str(cause).splitlines()[0][:200]}]" if cause else "")
    )


def _resolve(source: str | Path, kind: str, flag: str) -> tuple[str, bool]:
    """Return (what to pass to from_pretrained, local_files_only), or raise EncoderNotFoundError.

    Checks the config alone first so an offline machine fails fast with one message rather than
    after several slow download retries per file.
    """
    from transformers import AutoConfig

    source_str = str(source)
    path = Path(source_str).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise EncoderNotFoundError(_offline_message(kind, source_str, flag, None))
        return str(path), True
    if looks_like_path(source_str) or path.exists():
        raise EncoderNotFoundError(_offline_message(kind, source_str, flag, None))
    try:
        AutoConfig.from_pretrained(source_str, local_files_only=True)
        return source_str, True
    except OSError as err:
        cause: BaseException = err
    if os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("", "0", "false", "no"):
        raise EncoderNotFoundError(_offline_message(kind, source_str, flag, cause))
    try:
        AutoConfig.from_pretrained(source_str)
    except OSError as err:
        raise EncoderNotFoundError(_offline_message(kind, source_str, flag, err)) from err
    return source_str, False


def load_audio_encoder(id_or_dir: str | Path, device: str | torch.device | None = None) -> AudioEncoder:
    """Load a wav2vec2-style model and its feature extractor from a local directory or a hub id."""
    from transformers import AutoFeatureExtractor, AutoModel

    source, local_only = _resolve(id_or_dir, "audio", "--audio-encoder")
    try:
        model = AutoModel.from_pretrained(source, local_files_only=local_only, dtype=torch.float32)
        feature_extractor = AutoFeatureExtractor.from_pretrained(source, local_files_only=local_only)
    except OSError as err:  # e.g. config present but weights or preprocessor files missing
        raise EncoderNotFoundError(_offline_message("audio", str(id_or_dir), "--audio-encoder", err)) from err
    identity = source_identity(source)
    assert identity is not None, f"{source} loaded but has no identity"
    return AudioEncoder(model, feature_extractor, f"{identity}|{AUDIO_POOLING}", str(id_or_dir),
                        as_device(device))


def load_text_encoder(id_or_dir: str | Path, device: str | torch.device | None = None) -> TextEncoder:
    """Load a RoBERTa-style model and its tokenizer from a local directory or a hub id."""
    from transformers import AutoModel, AutoTokenizer

    source, local_only = _resolve(id_or_dir, "text", "--text-encoder")
    try:
        model = AutoModel.from_pretrained(source, local_files_only=local_only, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    except OSError as err:
        raise EncoderNotFoundError(_offline_message("text", str(id_or_dir), "--text-encoder", err)) from err
    identity = source_identity(source)
    assert identity is not None, f"{source} loaded but has no identity"
    return TextEncoder(model, tokenizer, f"{identity}|{TEXT_POOLING}", str(id_or_dir), as_device(device))


def encoder_identity(encoder: str | Path | AudioEncoder | TextEncoder, kind: str) -> str | None:
    """The identity an encoder argument will have once loaded, or None if that needs a download."""
    if isinstance(encoder, (AudioEncoder, TextEncoder)):
        return encoder.identity
    identity = source_identity(encoder)
    if identity is None:
        return None
    return f"{identity}|{AUDIO_POOLING if kind == 'audio' else TEXT_POOLING}"



def load_encoder(encoder: AudioArg | TextArg, kind: str,
                 device: str | torch.device | None = None) -> AudioEncoder | TextEncoder:
    """A loaded ``kind`` encoder: ``encoder`` itself (moved to ``device`` when one is given), or loaded
    from its directory or hub id."""
    if isinstance(encoder, (AudioEncoder, TextEncoder)):
        return encoder.to(device) if device is not None else encoder
    return (load_audio_encoder if kind == "audio" else load_text_encoder)(encoder, device)


@contextlib.contextmanager
def quiet_loading(quiet: bool) -> Iterator[None]:
    """transformers' progress bars (loading weights, hub downloads) off for the block when ``quiet``;
    its process-wide switch is restored afterwards. Imports transformers only when ``quiet``."""
    if not quiet:
        yield
        return
    import transformers.utils.logging as tf_logging

    was = tf_logging.is_progress_bar_enabled()
    tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            tf_logging.enable_progress_bar()


def pin(encoder: AudioArg | TextArg, kind: str, device: str | torch.device | None = None, *,
        quiet: bool = False) -> tuple[AudioArg | TextArg, str]:
    """``(encoder, identity)``, the identity from the files where possible so that a cache hit never
    loads a model; a hub id not yet downloaded is loaded (on ``device``), the only way to pin it
    (``quiet``: without transformers' progress bars)."""
    identity = encoder_identity(encoder, kind)
    if identity is None:
        with quiet_loading(quiet):
            encoder = load_encoder(encoder, kind, device)
        identity = encoder.identity
    return encoder, identity

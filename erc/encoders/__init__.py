"""Frozen encoders that turn one utterance into one pooled vector per modality (DESIGN §4).

* :mod:`erc.encoders.models` — ``AudioEncoder`` (wav2vec2, mean over valid frames) and ``TextEncoder``
  (RoBERTa, first token), the wrappers of a loaded Hugging Face model;
* :mod:`erc.encoders.load` — loading from a local ``save_pretrained`` directory or a hub id, the
  offline error, and the identity an encoder argument will have once loaded;
* :mod:`erc.encoders.identity` — identities: a string that changes whenever the weights, config or
  pre-processing files change (the feature cache is keyed by it).

The demo encoders (small seeded random models for machines without a hub) are built by
:mod:`erc.data.demo_encoders`, beside the demo corpus.
"""

from erc.data.demo_encoders import build_demo_encoders  # re-exported: other layers import it from here
from erc.encoders.identity import AUDIO_POOLING, POOLING_VERSION, TEXT_POOLING, file_digest, source_identity
from erc.encoders.load import (
    AudioArg,
    EncoderNotFoundError,
    TextArg,
    encoder_identity,
    load_audio_encoder,
    load_encoder,
    load_text_encoder,
    pin,
    quiet_loading,
)
from erc.encoders.models import AudioEncoder, TextEncoder, describe

__all__ = [
    "AUDIO_POOLING", "POOLING_VERSION", "TEXT_POOLING",
    "AudioArg", "AudioEncoder", "EncoderNotFoundError", "TextArg", "TextEncoder", "build_demo_encoders",
    "describe", "encoder_identity", "file_digest", "load_audio_encoder", "load_encoder", "load_text_encoder",
    "pin", "quiet_loading", "source_identity",
]

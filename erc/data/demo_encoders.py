"""Demo encoders: a small seeded random wav2vec2 and RoBERTa (its tokenizer trained on the demo
transcripts), for machines without a hub (DESIGN §10). They are saved with ``save_pretrained``, so they
load through exactly the same code as real weights (:func:`erc.encoders.load_audio_encoder`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import torch
from torch import nn

from erc.atomic import Need
from erc.cache import build_once

log = logging.getLogger(__name__)
M = TypeVar("M", bound=nn.Module)

DEMO_VERSION = 2  # bump when the demo architectures or their weights change, so existing demo encoders are rebuilt
DEMO_MARKER = "DEMO_ENCODERS.json"
DEMO_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0..4
MODALITY_DIRS = ("audio", "text")  # the two save_pretrained directories under a demo-encoder directory


def random_model(model_class: type[M], config: Any, *, seed: int) -> M:
    """``model_class(config)`` in eval mode, every parameter drawn from a local generator seeded with ``seed``.

    ``transformers``' ``_init_weights`` and torch's ``reset_parameters`` draw from torch's global generator
    and take none of their own, so the constructor's draws are made inside ``fork_rng`` (the caller's random
    state is restored: building an encoder changes no one else's random numbers) and then thrown away: every
    parameter is drawn again by :func:`draw_weights_`. Same seed, same weights, in any process."""
    with torch.random.fork_rng(devices=[]):
        model = model_class(config)
    draw_weights_(model, generator=torch.Generator().manual_seed(seed),
                  std=getattr(config, "initializer_range", 0.02))
    return model.eval()


@torch.no_grad()
def draw_weights_(model: nn.Module, *, generator: torch.Generator, std: float) -> None:
    """Draw every parameter of a wav2vec2 or RoBERTa model from ``generator``, with the distributions of
    ``transformers``' own ``_init_weights`` for them. A parameter no rule covers is an error, not a weight
    silently left to the global generator."""
    from transformers.models.wav2vec2.modeling_wav2vec2 import (
        Wav2Vec2FeatureProjection,
        Wav2Vec2Model,
        Wav2Vec2PositionalConvEmbedding,
    )

    drawn: set[int] = set()

    def fresh(*params: torch.Tensor | None) -> list[torch.Tensor]:
        # An enclosing module's rule wins over its children's (as in transformers: apply() runs it last).
        # Parameters only: a weight-normed conv's .weight is computed afresh on each access.
        out = [p for p in params if isinstance(p, nn.Parameter) and id(p) not in drawn]
        drawn.update(id(p) for p in out)
        return out

    for module in model.modules():  # parents before children
        if isinstance(module, Wav2Vec2PositionalConvEmbedding):
            conv = module.conv
            bound = 2 * math.sqrt(1 / (conv.kernel_size[0] * conv.in_channels))
            if hasattr(conv, "parametrizations"):  # weight norm: weight = g · v / ‖v‖; drawn so that weight = v
                g, v = conv.parametrizations.weight.original0, conv.parametrizations.weight.original1
                for w in fresh(v):
                    nn.init.normal_(w, 0.0, bound, generator=generator)
                for w in fresh(g):
                    dims = [d for d in range(v.dim()) if w.shape[d] == 1]
                    w.copy_(torch.linalg.vector_norm(v, dim=dims, keepdim=True))
            else:
                for w in fresh(conv.weight):
                    nn.init.normal_(w, 0.0, bound, generator=generator)
            for b in fresh(conv.bias):
                b.zero_()
        elif isinstance(module, Wav2Vec2FeatureProjection):
            k = math.sqrt(1 / module.projection.in_features)
            for w in fresh(module.projection.weight, module.projection.bias):
                nn.init.uniform_(w, -k, k, generator=generator)
        elif isinstance(module, Wav2Vec2Model) and hasattr(module, "masked_spec_embed"):
            for w in fresh(module.masked_spec_embed):
                nn.init.uniform_(w, generator=generator)
        elif isinstance(module, nn.Conv1d):
            for w in fresh(module.weight):
                nn.init.kaiming_normal_(w, generator=generator)
            for b in fresh(module.bias):
                k = math.sqrt(module.groups / (module.in_channels * module.kernel_size[0]))
                nn.init.uniform_(b, -k, k, generator=generator)
        elif isinstance(module, nn.Linear):
            for w in fresh(module.weight):
                nn.init.normal_(w, 0.0, std, generator=generator)
            for b in fresh(module.bias):
                b.zero_()
        elif isinstance(module, nn.Embedding):
            for w in fresh(module.weight):
                nn.init.normal_(w, 0.0, std, generator=generator)
                if module.padding_idx is not None:
                    w[module.padding_idx].zero_()
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            for w in fresh(module.weight):
                w.fill_(1.0)
            for b in fresh(module.bias):
                b.zero_()
    missed = [name for name, p in model.named_parameters() if id(p) not in drawn]
    if missed:
        raise TypeError(f"draw_weights_ has no rule for {missed[:5]} of {type(model).__name__}; "
                        "add one for their module type")


def _demo_audio_model(seed: int) -> tuple[Any, Any]:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    # Standard wav2vec2 geometry (7 conv layers, 20 ms frames) at toy width: the 512-channel conv
    # stack would dominate the cost (~0.07 s per audio-second even at hidden 64). "layer" norm in
    # the conv stack makes padded batches exact (see AudioEncoder.batchable).
    config = Wav2Vec2Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        conv_dim=(32,) * 7, feat_extract_norm="layer", do_stable_layer_norm=True,
        num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=4,
        mask_time_prob=0.0, vocab_size=8,
    )
    model = random_model(Wav2Vec2Model, config, seed=seed)
    feature_extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=True,
    )
    return model, feature_extractor


def _demo_text_model(texts: list[str], seed: int, work: Path) -> tuple[Any, Any]:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=2000, min_frequency=2, special_tokens=DEMO_SPECIAL_TOKENS,
                            show_progress=False)
    bpe.save_model(str(work))  # vocab.json + merges.txt: the form RobertaTokenizer is built from
    vocab = json.loads((work / "vocab.json").read_text(encoding="utf-8"))
    merges = [tuple(line.split(" ")) for line in
              (work / "merges.txt").read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=128)
    # Hidden 128, not 64: a random encoder's first-token state is roughly a projection of the mean
    # token embedding, and a narrow one loses part of the transcripts' linearly decodable valence
    # signal (5-fold ridge probe R² on the demo corpus: 0.52 at width 64, 0.59 at 128, 0.62 for
    # bag-of-words).
    config = RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=256, max_position_embeddings=128 + 2, type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return random_model(RobertaModel, config, seed=seed), tokenizer


def _texts_of(corpus: Any) -> list[str]:
    if hasattr(corpus, "utterances"):
        corpus = corpus.utterances
    if isinstance(corpus, pd.DataFrame):
        corpus = corpus["text"]
    return [str(t) for t in corpus]


def build_demo_encoders(out_dir: str | Path, corpus: Any, seed: int = 0) -> tuple[Path, Path]:
    """Write a small seeded random wav2vec2 and RoBERTa (tokenizer trained on the transcripts).

    ``corpus``: a Corpus, its utterance DataFrame, or an iterable of transcripts. Returns
    ``(out_dir/"audio", out_dir/"text")``, each a complete ``save_pretrained`` directory. Reuses
    existing ones built with the same seed from the same transcripts; otherwise builds them once
    (:func:`erc.cache.build_once`: one builder, published by a rename, so a killed build is rebuilt
    rather than trusted). ``out_dir`` must be empty, missing or a demo-encoder directory.
    """
    out_dir = Path(out_dir).expanduser().resolve()
    texts = _texts_of(corpus)
    if not texts:
        raise ValueError("build_demo_encoders needs transcripts to train the demo tokenizer on")
    marker = {"version": DEMO_VERSION, "seed": seed,
              "texts_sha256": hashlib.sha256("\n".join(texts).encode()).hexdigest()}

    def load(path: Path) -> tuple[Path, Path] | None:
        try:
            found = json.loads((path / DEMO_MARKER).read_text())
        except (OSError, ValueError):
            return None
        dirs = tuple(path / name for name in MODALITY_DIRS)
        return dirs if found == marker and all((d / "config.json").is_file() for d in dirs) else None  # type: ignore[return-value]

    def build(tmp: Path, need: Need) -> None:
        model, feature_extractor = _demo_audio_model(seed)
        (tmp / ".bpe").mkdir()
        text_model, tokenizer = _demo_text_model(texts, seed, tmp / ".bpe")
        shutil.rmtree(tmp / ".bpe")
        # float32 weights + ~1 MB of configs and tokenizer files
        need.require(4 * sum(p.numel() for m in (model, text_model) for p in m.parameters()) + 2**20)
        audio_dir, text_dir = (tmp / name for name in MODALITY_DIRS)
        model.save_pretrained(audio_dir)
        feature_extractor.save_pretrained(audio_dir)
        text_model.save_pretrained(text_dir)
        tokenizer.save_pretrained(text_dir)
        (tmp / DEMO_MARKER).write_text(json.dumps(marker, indent=1))
        log.info("demo encoders written to %s", out_dir)

    def replaceable(path: Path) -> bool:
        # an older demo-encoder directory (another seed or corpus), an empty one, or what a killed build
        # of earlier versions left (which built inside it: .lock, .build-*); never anything else
        return (path / DEMO_MARKER).is_file() or all(
            p.name in (*MODALITY_DIRS, ".lock") or p.name.startswith(".build-") for p in path.iterdir())

    return build_once(out_dir, build, load=load, what="the demo encoders", replaceable=replaceable)

"""Finetune mode (DESIGN §11): both encoders trained end to end with the fusion head, as the paper did.

:class:`EndToEnd` wraps the audio model (wav2vec2), the text model (RoBERTa) and one of the heads of
:mod:`erc.heads`: the audio vector is the mean of the last hidden states over the valid frames, the
text vector the first token's state — the same pooling as the feature cache (:mod:`erc.encoders`), so
an untrained ``EndToEnd`` reproduces the cached vectors. A head that reads sequences (``xattn``) gets
the encoders' last hidden states and masks unpooled instead (:meth:`EndToEnd.inputs`). Its ``state_dict`` holds the encoders under
``audio_encoder.`` / ``text_encoder.`` and the head under ``head.``.

:class:`FinetuneTrainer` is :class:`erc.trainer.Trainer` (the same loop, loss, schedule, selection,
early stopping and checkpoint state) with inputs from the input cache (:mod:`erc.inputs`):

- encoders loaded inside the run with :func:`erc.encoders.load_audio_encoder` / ``load_text_encoder``
  (a local directory or a hub id); two optimiser groups: encoders at ``encoder_lr``, head at ``lr``;
  ``freeze_cnn`` keeps wav2vec2's CNN feature encoder fixed (and out of the optimiser);
- batches: length-bucketed by default (``audio_padding='bucket'``: shuffled, then grouped by length
  within windows of 16 batches, so little padding is computed); ``audio_padding='fixed'`` pads every
  waveform to ``max_seconds`` with an all-ones mask, so the padding enters the mean pool (the paper);
- text: cleaned or raw transcript (``clean_text``), cut to ``max_tokens`` (the end-of-sequence token kept);
- the encoders' own randomness (dropout, LayerDrop, SpecAugment) draws from torch's and numpy's
  global generators, which this run owns while it trains (:class:`GlobalRng`): saved in the
  checkpoint, restored on resume, so a resumed run continues exactly;
- ``precision='bf16'``: autocast; ``grad_checkpointing``: activation checkpointing in both encoders;
- ``standardise``: input statistics from the pretrained encoders on up to :data:`STANDARDISE_ROWS`
  training utterances, fixed for the run (the encoders may then move under them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from erc.config import RunConfig
from erc.encoders import AudioEncoder, TextEncoder, load_audio_encoder, load_text_encoder
from erc.features import length_buckets
from erc.heads import BaseHead, build_head
from erc.inputs import InputTable
from erc.optim import autocast
from erc.sequences import SeqBatch, masked_mean
from erc.trainer import Trainer

STANDARDISE_ROWS = 256  # training utterances whose pretrained vectors give the input statistics
BUCKET_WINDOW = 16  # batches per window of similar lengths (length-bucketed batches)
EVAL_BATCH_SECONDS = 64.0  # padded audio per validation forward pass (memory bound, as the feature cache)
AUDIO_PREFIX, TEXT_PREFIX, HEAD_PREFIX = "audio_encoder.", "text_encoder.", "head."


class EndToEnd(nn.Module):
    """Audio model + text model + fusion head; ``forward(batch)`` → (B, outputs)."""

    def __init__(self, audio: AudioEncoder, text: TextEncoder, head: BaseHead) -> None:
        super().__init__()
        self.audio_encoder = audio.model
        self.text_encoder = text.model
        self.head = head
        self._audio = audio  # the wrapper's frame-mask logic (not a submodule: weights live above)
        self.batchable = audio.batchable

    def audio_states(self, values: Tensor, mask: Tensor) -> SeqBatch:
        """The last hidden states (B, frames, D_a) and the mask of the frames computed from real samples."""
        # Group-norm conv stacks are trained without attention masks (see AudioEncoder.batchable).
        hidden = self.audio_encoder(values, attention_mask=mask if self.batchable else None).last_hidden_state
        return SeqBatch(hidden, self._audio.frame_mask(mask, hidden.shape[1]))

    def text_states(self, ids: Tensor, mask: Tensor) -> SeqBatch:
        """The last hidden states (B, tokens, D_t) and the mask of the real tokens."""
        return SeqBatch(self.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask.bool())

    def pool_audio(self, values: Tensor, mask: Tensor) -> Tensor:
        """(B, D_a): mean of the last hidden states over the frames ``mask`` marks valid."""
        states = self.audio_states(values, mask)
        return masked_mean(states.values, states.mask)

    def pool_text(self, ids: Tensor, mask: Tensor) -> Tensor:
        """(B, D_t): the first token's last hidden state."""
        return self.text_states(ids, mask).values[:, 0]

    def vectors(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        a = self.pool_audio(batch["values"], batch["audio_mask"])
        t = self.pool_text(batch["ids"], batch["text_mask"])
        return a.float(), t.float()

    def sequences(self, batch: dict[str, Tensor]) -> tuple[SeqBatch, SeqBatch]:
        """Both encoders' last hidden states with their masks, unpooled: what a sequence head reads."""
        a = self.audio_states(batch["values"], batch["audio_mask"])
        t = self.text_states(batch["ids"], batch["text_mask"])
        return a.float(), t.float()

    def inputs(self, batch: dict[str, Tensor]) -> tuple[Any, Any]:
        """What the head reads: pooled vectors, or the sequences themselves for a head that attends over them."""
        return self.sequences(batch) if self.head.reads_sequences else self.vectors(batch)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.head(*self.inputs(batch))

    def embed(self, batch: dict[str, Tensor]) -> Tensor:
        return self.head.embed(*self.inputs(batch))

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.audio_encoder, self.text_encoder) for p in m.parameters() if p.requires_grad]


class GlobalRng:
    """torch's (CPU and current CUDA device) and numpy's global generator states, owned by one run.

    ``with rng:`` installs the run's states and, on exit, keeps what the run drew and puts the
    previous states back. HF encoders draw dropout, LayerDrop and SpecAugment masks from the global
    generators; scoping them makes a seed's run exact and lets a checkpoint carry them.
    """

    def __init__(self, seed: int, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self.torch_state = torch.Generator().manual_seed(seed).get_state()
        self.cuda_state = torch.Generator(device=device).manual_seed(seed).get_state() if self.cuda else None
        self.numpy_state = np.random.RandomState(seed % 2**32).get_state()

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        outer = (torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if self.cuda else None,
                 np.random.get_state())
        torch.set_rng_state(self.torch_state)
        if self.cuda:
            torch.cuda.set_rng_state(self.cuda_state, self.device)
        np.random.set_state(self.numpy_state)
        try:
            yield
        finally:
            self.torch_state = torch.get_rng_state()
            if self.cuda:
                self.cuda_state = torch.cuda.get_rng_state(self.device)
            self.numpy_state = np.random.get_state()
            torch.set_rng_state(outer[0])
            if self.cuda:
                torch.cuda.set_rng_state(outer[1], self.device)
            np.random.set_state(outer[2])

    def state_dict(self) -> dict[str, Any]:
        return {"torch": self.torch_state, "cuda": self.cuda_state, "numpy": self.numpy_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.torch_state = state["torch"]
        self.cuda_state = state["cuda"] if self.cuda else None
        self.numpy_state = state["numpy"]


def collate(rows: InputTable, index: np.ndarray, *, clean_text: bool, max_tokens: int, pad_to: int | None,
            min_samples: int, normalize: bool, device: torch.device) -> dict[str, Tensor]:
    """Model inputs for ``rows[index]``: padded waveforms + masks, padded token ids + masks.

    ``pad_to``: pad (or crop) every waveform to this many samples with an all-ones mask (the paper's
    7 s); None pads to the longest in the batch and masks the padding. ``normalize``: zero mean, unit
    variance per utterance over its own samples, as wav2vec2's feature extractor does.
    """
    waves = []
    for i in index:
        w = rows.wave(int(i))
        if len(w) < min_samples:
            w = np.pad(w, (0, min_samples - len(w)))
        if normalize:
            w = (w - w.mean()) / np.sqrt(w.var() + 1e-7)
        waves.append(w[:pad_to] if pad_to is not None else w)
    width = pad_to if pad_to is not None else max(len(w) for w in waves)
    values = np.zeros((len(waves), width), dtype=np.float32)
    audio_mask = np.zeros((len(waves), width), dtype=np.int64)
    for k, w in enumerate(waves):
        values[k, : len(w)] = w
        audio_mask[k, : width if pad_to is not None else len(w)] = 1
    ids = []
    for i in index:
        x = rows.token_ids(int(i), raw=not clean_text)
        if max_tokens and len(x) > max_tokens:  # as the tokenizer's truncation: keep the end-of-sequence token
            x = np.concatenate([x[: max_tokens - 1], [rows.blobs.eos_token_id]])
        ids.append(x)
    n_tok = max(len(x) for x in ids)
    id_arr = np.full((len(ids), n_tok), rows.blobs.pad_token_id, dtype=np.int64)
    text_mask = np.zeros((len(ids), n_tok), dtype=np.int64)
    for k, x in enumerate(ids):
        id_arr[k, : len(x)] = x
        text_mask[k, : len(x)] = 1
    return {"values": torch.from_numpy(values).to(device), "audio_mask": torch.from_numpy(audio_mask).to(device),
            "ids": torch.from_numpy(id_arr).to(device), "text_mask": torch.from_numpy(text_mask).to(device)}


EncoderArg = str | Path | AudioEncoder | TextEncoder


class FinetuneTrainer(Trainer):
    """A run of encoders + head on the input cache; see the module doc."""

    def __init__(self, config: RunConfig, train: InputTable, valid: InputTable, *, audio_encoder: EncoderArg,
                 text_encoder: EncoderArg, dev: InputTable | None = None, keep_embeddings: bool = False) -> None:
        self._sources = (audio_encoder, text_encoder)
        super().__init__(config, train, valid, dev=dev, keep_embeddings=keep_embeddings)  # type: ignore[arg-type]
        self.rng = GlobalRng(config.seed + 2, self.device)

    # ---------------------------------------------------------------- hooks

    def _check_config(self) -> None:
        pass  # every key applies

    def _setup(self, train: InputTable, valid: InputTable) -> None:  # type: ignore[override]
        config, dev = self.config, self.device
        audio_src, text_src = self._sources
        audio = audio_src if isinstance(audio_src, AudioEncoder) else load_audio_encoder(audio_src, dev)
        text = text_src if isinstance(text_src, TextEncoder) else load_text_encoder(text_src, dev)
        audio.to(dev)
        text.to(dev)
        if audio.sample_rate != train.blobs.sample_rate:
            raise ValueError(f"the input cache holds {train.blobs.sample_rate} Hz audio, the audio encoder "
                             f"expects {audio.sample_rate} Hz")
        self.normalize = bool(getattr(audio.feature_extractor, "do_normalize", True))
        self.min_samples = audio.min_samples
        if config.protocol.audio_padding == "fixed":
            if train.blobs.max_seconds is None:
                raise ValueError("audio_padding='fixed' pads to the input cache's crop, and this cache has none")
            self.pad_to: int | None = round(train.blobs.max_seconds * audio.sample_rate)
        else:
            self.pad_to = None
        if config.optim.freeze_cnn:
            audio.model.freeze_feature_encoder()
        if config.optim.grad_checkpointing:
            for model in (audio.model, text.model):
                enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
                enable()
        head = build_head(config.head, audio.dim, text.dim)
        head.reset_parameters(self.generator)
        self.model = EndToEnd(audio, text, head.to(dev))
        self.head = head
        if config.head.standardise:
            a, t = self._pretrained_vectors(train)
            va = self.va
            target = (va.mean(0), va.std(0)) if va.shape[-1] else (va.new_zeros(0), va.new_ones(0))  # no dimensions
            head.set_normalisation(a.mean(0), a.std(0), t.mean(0), t.std(0), *target)

    @torch.no_grad()
    def _pretrained_vectors(self, rows: InputTable) -> tuple[Tensor, Tensor]:
        """(n, D_a), (n, D_t): what the head reads of up to STANDARDISE_ROWS training utterances, one
        row per utterance, or — for a sequence head — one row per real frame or token (its statistics
        are over positions, never over padding)."""
        pick = torch.randperm(len(rows), generator=self.generator)[:STANDARDISE_ROWS].numpy()
        self.model.eval()
        parts = [self.model.inputs(self._collate(rows, pick[i : i + 16])) for i in range(0, len(pick), 16)]
        if self.head.reads_sequences:
            return (torch.cat([a.values[a.mask] for a, _ in parts]), torch.cat([t.values[t.mask] for _, t in parts]))
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _collate(self, rows: InputTable, index: np.ndarray) -> dict[str, Tensor]:
        p = self.config.protocol
        return collate(rows, index, clean_text=p.clean_text, max_tokens=p.max_tokens, pad_to=self.pad_to,
                       min_samples=self.min_samples, normalize=self.normalize, device=self.device)

    def _param_groups(self) -> Any:
        return [{"params": self.model.encoder_parameters(), "lr": self.config.optim.encoder_lr},
                {"params": list(self.head.parameters()), "lr": self.config.optim.lr}]

    def _batches(self) -> list[Tensor]:
        batches = super()._batches()
        if self.pad_to is not None or len(batches) < 2:
            return batches
        # length buckets: sort each window of shuffled batches by length, then shuffle the batches
        lengths = torch.as_tensor(self.train_rows.wave_len)
        window = self.config.optim.batch_size * BUCKET_WINDOW
        order = torch.cat(batches).cpu()
        grouped = []
        for start in range(0, len(order), window):
            chunk = order[start : start + window]
            chunk = chunk[torch.argsort(lengths[chunk], descending=True, stable=True)]
            grouped += list(chunk.split(self.config.optim.batch_size))
        shuffle = torch.randperm(len(grouped), generator=self.generator)
        return [grouped[int(k)].to(self.device) for k in shuffle]

    def _train_output(self, index: Tensor) -> Tensor:
        return self.model(self._collate(self.train_rows, index.cpu().numpy()))

    def _eval_inputs(self, rows: InputTable) -> InputTable:  # type: ignore[override]
        return rows  # collated batch by batch

    @torch.no_grad()
    def _eval_output(self, inputs: Any, embed: bool = False,
                     perturb: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None
                     ) -> tuple[Tensor, Tensor | None]:
        """Eval-mode outputs of ``inputs`` (an :class:`InputTable`), batched by length; ``perturb``
        changes each collated batch first (the robustness conditions, :mod:`erc.robustness`)."""
        rows: InputTable = inputs
        self.model.eval()
        lengths = [int(n) if self.pad_to is None else self.pad_to for n in rows.wave_len]
        outs: list[Tensor | None] = [None] * len(rows)
        embs: list[Tensor | None] = [None] * len(rows)
        for batch in length_buckets(lengths, int(EVAL_BATCH_SECONDS * rows.blobs.sample_rate)):
            collated = self._collate(rows, np.asarray(batch))
            if perturb is not None:
                collated = perturb(collated)
            a, t = self.model.inputs(collated)
            out, emb = self.head(a, t, return_embedding=True) if embed else (self.head(a, t), None)
            for k, i in enumerate(batch):
                outs[i] = out[k]
                if emb is not None:
                    embs[i] = emb[k]
        self.model.train()
        return torch.stack(outs), (torch.stack(embs) if embed else None)  # type: ignore[arg-type]

    def _valid_output(self) -> tuple[Tensor, Tensor | None]:
        return self._eval_output(self.valid_rows, embed=self.keep_embeddings)

    # ---------------------------------------------------------------- robustness on raw inputs

    @torch.no_grad()
    def robustness(self, levels: tuple[float, ...] | None = None) -> dict[str, dict[str, float]]:
        """The held-out metrics of the selected weights with silent audio, an empty transcript, or
        Gaussian noise on the waveform (the rule: :mod:`erc.robustness`); no ``noise_text_*``."""
        from erc.metrics import validation_metrics
        from erc.robustness import MISSING, NOISE, NOISE_LEVELS, condition_name

        wave_std = 1.0 if self.normalize else self._wave_std()
        rows = self.valid_rows

        def silent(batch: dict[str, Tensor]) -> dict[str, Tensor]:
            return {**batch, "values": torch.zeros_like(batch["values"])}

        def empty(batch: dict[str, Tensor]) -> dict[str, Tensor]:
            # the tokenizer's encoding of "": its begin token (every row's first) and the end token
            ids = torch.full_like(batch["ids"][:, :2], rows.blobs.eos_token_id)
            ids[:, 0] = batch["ids"][:, 0]
            return {**batch, "ids": ids, "text_mask": torch.ones_like(ids)}

        def noisy(sigma: float) -> Any:
            # every level restarts the trial seed's generator: the levels share their noise, as in cached mode
            draws = torch.Generator().manual_seed(self.config.seed)

            def perturb(batch: dict[str, Tensor]) -> dict[str, Tensor]:
                eps = torch.randn(batch["values"].shape, generator=draws).to(batch["values"].device)
                return {**batch, "values": batch["values"] + sigma * wave_std * eps * batch["audio_mask"]}
            return perturb

        conditions = {condition_name(MISSING, "audio"): silent, condition_name(MISSING, "text"): empty}
        conditions.update({condition_name(NOISE, "audio", s): noisy(s)
                           for s in (NOISE_LEVELS if levels is None else levels)})
        results = {}
        with self._selected_weights(), autocast(self.device, self.config.optim.precision):
            for name, perturb in conditions.items():
                out, _ = self._eval_output(rows, perturb=perturb)
                results[name] = validation_metrics(out.float(), self.valid_majority, self.valid_va, self.config.loss)
        return results

    def _wave_std(self) -> float:
        """The training waveforms' sample standard deviation (over at most STANDARDISE_ROWS of them)."""
        rows = self.train_rows
        waves = [rows.wave(i) for i in range(min(len(rows), STANDARDISE_ROWS))]
        return float(np.concatenate(waves).std()) if waves else 1.0

    # ---------------------------------------------------------------- the run's own global generators

    def train_epoch(self) -> float:
        with self.rng.scope():
            return super().train_epoch()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "global_rng": self.rng.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rng.load_state_dict(state["global_rng"])

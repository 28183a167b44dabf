"""Why trials train on cached features, and how hard the heads drive the CPU.

1. Time per training epoch of the fusion head on the same utterances, (a) from cached pooled
   vectors vs (b) running the frozen encoders forward on the audio and text of every batch and
   then the same head step — for the demo encoders and for a mid-size wav2vec2 (hidden 256,
   4 layers, the standard 7-layer 512-channel conv stack) with a mid-size RoBERTa (hidden 256,
   4 layers). Waveforms are decoded once and held in memory, so (b) counts encoder compute only,
   not WAV reading: the real end-to-end cost is higher still.
2. Achieved GFLOP/s of one training step (forward + backward + AdamW) of each head preset, FLOPs
   counted with ``torch.utils.flop_counter.FlopCounterMode``, next to a large ``torch.matmul`` on
   the same threads (the machine's practical ceiling).

    python benchmarks/head_vs_end_to_end.py [--utterances 64] [--threads N]

The last printed line is a JSON object with ``cached_vs_end_to_end_demo``,
``cached_vs_end_to_end_mid`` (end-to-end time / cached time per epoch: how many times faster the
cached path is), ``gflops_paper`` (paper-preset training step) and ``gflops_matmul``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from erc.vocab import DIMENSIONS, N_CLASSES, N_DIMENSIONS

if TYPE_CHECKING:  # the functions import numpy, torch and erc's models: --help answers at once
    import numpy as np
    import torch

    from erc.encoders import AudioEncoder, TextEncoder
    from erc.heads import HeadConfig


def _timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Fastest wall time of ``fn`` over ``repeats`` calls after ``warmup`` untimed calls.

    The minimum, as ``timeit`` advises: on a shared machine other processes only ever add time.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


class HeadTrainer:
    """One head + optimizer; ``step(a, t, targets)`` is exactly fit()'s training step."""

    def __init__(self, config: HeadConfig, d_audio: int, d_text: int) -> None:
        import torch

        from erc.heads import build_head

        self.head = build_head(config, d_audio, d_text).train()
        self.head.reset_parameters(torch.Generator().manual_seed(0))
        self.opt = torch.optim.AdamW(self.head.parameters(), lr=1e-3, fused=True)

    def loss(self, a: torch.Tensor, t: torch.Tensor, y: torch.Tensor, va: torch.Tensor) -> torch.Tensor:
        from erc.losses import multitask_loss

        return multitask_loss(self.head(a, t), y, va).loss

    def step(self, a: torch.Tensor, t: torch.Tensor, y: torch.Tensor, va: torch.Tensor) -> None:
        import torch

        loss = self.loss(a, t, y, va)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.head.parameters(), 1.0)
        self.opt.step()


def _batches(n: int, batch_size: int) -> list[np.ndarray]:
    import numpy as np

    order = np.random.default_rng(0).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def epoch_times(
    audio_enc: AudioEncoder,
    text_enc: TextEncoder,
    waves: Sequence[np.ndarray],
    texts: Sequence[str],
    targets: torch.Tensor,
    va: torch.Tensor,
    batch_size: int,
    cached_repeats: int,
    e2e_repeats: int,
) -> tuple[float, float]:
    """(cached, end-to-end) seconds per epoch of the demo-preset tensor-mixer head on these utterances."""
    import numpy as np
    import torch

    from erc.heads import HeadConfig

    batches = _batches(len(waves), batch_size)
    # the feature cache: each encoder once per utterance
    order = np.concatenate(batches)
    audio_vec = torch.zeros(len(waves), audio_enc.dim)
    text_vec = torch.zeros(len(waves), text_enc.dim)
    audio_vec[order] = torch.as_tensor(np.concatenate([audio_enc.pool([waves[i] for i in b]) for b in batches]))
    text_vec[order] = torch.as_tensor(np.concatenate([text_enc.pool([texts[i] for i in b]) for b in batches]))

    trainer = HeadTrainer(HeadConfig.demo(fusion="outer"), audio_enc.dim, text_enc.dim)

    def cached_epoch() -> None:
        for b in batches:
            idx = torch.as_tensor(b)
            trainer.step(audio_vec[idx], text_vec[idx], targets[idx], va[idx])

    def end_to_end_epoch() -> None:
        for b in batches:
            idx = torch.as_tensor(b)
            a = torch.as_tensor(audio_enc.pool([waves[i] for i in b]))  # frozen: inference mode inside
            t = torch.as_tensor(text_enc.pool([texts[i] for i in b]))
            trainer.step(a, t, targets[idx], va[idx])

    return _timed(cached_epoch, cached_repeats), _timed(end_to_end_epoch, e2e_repeats, warmup=0)


def mid_encoders(tokenizer) -> tuple[AudioEncoder, TextEncoder]:
    """A mid-size wav2vec2 (standard conv stack) and RoBERTa, randomly initialised (cost, not quality)."""
    from transformers import (
        RobertaConfig,
        RobertaModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
    )

    from erc.data.demo_encoders import random_model
    from erc.encoders import AudioEncoder, TextEncoder

    # conv_dim / kernels / strides left at wav2vec2's defaults: 7 layers × 512 channels, 20 ms frames.
    # "layer" norm (as in the large models) so padded batches are exact and batching is allowed.
    audio = random_model(Wav2Vec2Model, Wav2Vec2Config(
        hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
        feat_extract_norm="layer", do_stable_layer_norm=True, mask_time_prob=0.0), seed=0)
    text = random_model(RobertaModel, RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=1024, max_position_embeddings=130, type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id), seed=0)
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                  return_attention_mask=True)
    return (AudioEncoder.from_model(audio, fe, "cpu", name="mid-wav2vec2-h256-l4"),
            TextEncoder.from_model(text, tokenizer, "cpu", name="mid-roberta-h256-l4"))


def step_gflops(preset: str, d_audio: int, d_text: int, batch_size: int, steps: int) -> tuple[float, float, float]:
    """(GFLOP per step, seconds per step, GFLOP/s) of one tensor-mixer training step."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from erc.heads import HeadConfig

    trainer = HeadTrainer(HeadConfig.from_preset(preset, fusion="outer"), d_audio, d_text)
    g = torch.Generator().manual_seed(0)
    a, t = torch.randn(batch_size, d_audio, generator=g), torch.randn(batch_size, d_text, generator=g)
    y = torch.softmax(torch.randn(batch_size, N_CLASSES, generator=g), 1)
    va = torch.rand(batch_size, N_DIMENSIONS, generator=g) * 4 + 1
    counter = FlopCounterMode(display=False)
    with counter:  # forward + backward (the optimizer's elementwise work is negligible and not counted)
        trainer.loss(a, t, y, va).backward()
    gflop = counter.get_total_flops() / 1e9
    seconds = _timed(lambda: trainer.step(a, t, y, va), steps)
    return gflop, seconds, gflop / seconds


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    import torch

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    seconds = _timed(lambda: torch.matmul(x, y), repeats, warmup=2)
    return 2 * n**3 / seconds / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=64, help="demo utterances per epoch (default 64)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--paper-batch", type=int, default=4, help="batch of the timed paper-preset step")
    parser.add_argument("--paper-steps", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="where to write the demo corpus/encoders")
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    from erc.audio import load_audio
    from erc.data import load_corpus
    from erc.data.demo import write_demo_corpus
    from erc.encoders import build_demo_encoders, load_audio_encoder, load_text_encoder
    from erc.labels import peakl, soft

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        root = write_demo_corpus(work / "data", seed=0, kemdy19_sessions=5, kemdy20_sessions=5,
                                 utterances_per_speaker=args.utterances // 20 + 2)
        corpus = load_corpus(root, verbose=False)
        utts = corpus.utterances.iloc[: args.utterances]
        waves = [load_audio(p) for p in utts["wav_path"]]
        texts = [str(t) for t in utts["text"]]
        votes = np.stack(utts["votes"].to_numpy())
        targets = torch.as_tensor(peakl(soft(votes)), dtype=torch.float32)
        va = torch.tensor(utts[list(DIMENSIONS)].to_numpy(np.float32))
        seconds_audio = sum(len(w) for w in waves) / 16000
        audio_dir, text_dir = build_demo_encoders(work / "encoders", corpus, seed=0)
        demo = (load_audio_encoder(audio_dir, "cpu"), load_text_encoder(text_dir, "cpu"))
        mid = mid_encoders(demo[1].tokenizer)

        print(f"{len(waves)} demo utterances ({seconds_audio:.0f} s of audio), batch {args.batch_size}, "
              f"{threads} torch thread(s); head: tensor mixer, demo preset")
        print(f"{'encoders':<34} {'cached s/epoch':>15} {'end-to-end s/epoch':>19} {'ratio':>8}")
        ratios = {}
        for name, (audio_enc, text_enc) in (("demo", demo), ("mid", mid)):
            cached, e2e = epoch_times(audio_enc, text_enc, waves, texts, targets, va, args.batch_size,
                                      cached_repeats=20, e2e_repeats=2 if name == "mid" else 3)
            ratios[name] = e2e / cached
            label = f"{name}: {audio_enc.name.split('/')[-1]} + {text_enc.name.split('/')[-1]}"
            print(f"{label[:34]:<34} {cached:>15.4f} {e2e:>19.3f} {ratios[name]:>7.0f}x")

    print(f"\ntraining step GFLOP/s ({threads} thread(s)); FLOPs of forward + backward")
    print(f"{'':<28} {'batch':>6} {'GFLOP/step':>11} {'s/step':>9} {'GFLOP/s':>9}")
    flops = {}
    for preset, d_a, d_t, batch, steps in (("demo", demo[0].dim, demo[1].dim, args.batch_size, 30),
                                           ("paper", 1024, 1024, args.paper_batch, args.paper_steps)):
        gflop, seconds, rate = step_gflops(preset, d_a, d_t, batch, steps)
        flops[preset] = rate
        print(f"{'head preset ' + preset:<28} {batch:>6} {gflop:>11.2f} {seconds:>9.3f} {rate:>9.1f}")
        if preset == "paper":
            print(f"{'  per sample':<28} {'':>6} {gflop / batch:>11.1f}")
    mm = matmul_gflops()
    print(f"{'torch.matmul 2048x2048':<28} {'':>6} {2 * 2048**3 / 1e9:>11.2f} {'':>9} {mm:>9.1f}")
    print(f"paper head reaches {flops['paper'] / mm:.0%} of matmul, demo head {flops['demo'] / mm:.0%}")

    print(json.dumps({
        "cached_vs_end_to_end_demo": round(ratios["demo"], 1),
        "cached_vs_end_to_end_mid": round(ratios["mid"], 1),
        "gflops_paper": round(flops["paper"], 1),
        "gflops_matmul": round(mm, 1),
        "gflops_demo": round(flops["demo"], 2),
        "threads": threads,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Audio feature extraction: length-bucketed batches vs padding every utterance to 7 s (DESIGN §4).

Measures, in one run and side by side, the throughput (utterances/s) of the pooled wav2vec2 forward
with the two batching strategies, for

* the demo audio encoder (hidden 64, 32-channel conv stack) on the whole demo corpus, and
* a mid-size wav2vec2 (hidden 256, 4 layers, the standard 512-channel conv stack) on a subset,

and the largest absolute difference between a pooled vector from a padded batch (either strategy)
and the same utterance run alone without padding. Both strategies get the same budget of padded
audio per forward pass (``--batch-seconds``), read the same in-memory waves (file decoding is the
same work for both and is left out), and run alternately so that background load hits both alike.
The last line printed is a JSON object with ``bucketed_vs_fixed_speedup_demo``,
``bucketed_vs_fixed_speedup_mid`` and ``max_abs_diff``.

    python benchmarks/extraction.py [--work DIR] [--mid-utterances 96] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoFeatureExtractor, Wav2Vec2Config, Wav2Vec2Model

from erc.audio import MAX_SECONDS, load_audio
from erc.data import load_corpus
from erc.data.demo import write_demo_corpus
from erc.encoders import AudioEncoder, build_demo_encoders, load_audio_encoder
from erc.features import length_buckets


def plans(waves: list[np.ndarray], batch_seconds: float, sr: int) -> dict[str, list[tuple[list[int], int | None]]]:
    """Batches of both strategies as (utterance indices, pad-to samples or None = pad to the longest).

    bucketed: the feature cache's strategy (sort by length, count × longest ≤ the budget);
    fixed: every utterance padded to 7 s, as many per batch as the same budget allows.
    """
    buckets = length_buckets([len(w) for w in waves], int(batch_seconds * sr))
    size = max(1, int(batch_seconds // MAX_SECONDS))
    fixed = [list(range(i, min(i + size, len(waves)))) for i in range(0, len(waves), size)]
    return {"bucketed": [(b, None) for b in buckets], "fixed": [(b, int(MAX_SECONDS * sr)) for b in fixed]}


def run_interleaved(encoder: AudioEncoder, waves: list[np.ndarray], batch_seconds: float
                    ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Wall seconds per strategy, their batches interleaved in proportion to progress.

    On a shared machine the load from other processes drifts by several × within minutes; timing
    the strategies one after the other measures that drift. Interleaving batch by batch exposes
    both to the same load, so their ratio holds even when the absolute numbers wobble.
    """
    todo = plans(waves, batch_seconds, encoder.sample_rate)
    done = dict.fromkeys(todo, 0)
    seconds = dict.fromkeys(todo, 0.0)
    vectors = {mode: np.empty((len(waves), encoder.dim), np.float32) for mode in todo}
    while any(done[m] < len(todo[m]) for m in todo):
        mode = min((m for m in todo if done[m] < len(todo[m])), key=lambda m: done[m] / len(todo[m]))
        batch, pad_to = todo[mode][done[mode]]
        t0 = time.perf_counter()
        vectors[mode][batch] = encoder.pool([waves[i] for i in batch], pad_to=pad_to)
        seconds[mode] += time.perf_counter() - t0
        done[mode] += 1
    return seconds, vectors


def single(encoder: AudioEncoder, waves: list[np.ndarray]) -> np.ndarray:
    """Reference: one utterance per forward, no padding at all."""
    return np.concatenate([encoder.pool([w]) for w in waves])


def measure(name: str, encoder: AudioEncoder, waves: list[np.ndarray], batch_seconds: float,
            repeats: int, check: int) -> dict:
    """Throughput of both strategies (summed over ``repeats`` interleaved runs) and the max |Δ| of
    their vectors against single-utterance forwards on the first ``check`` utterances."""
    encoder.pool(waves[:2])  # warm-up (allocator, oneDNN kernels)
    totals = {"bucketed": 0.0, "fixed": 0.0}
    for _ in range(repeats):
        seconds, vectors = run_interleaved(encoder, waves, batch_seconds)
        totals = {m: totals[m] + seconds[m] for m in totals}
    reference = single(encoder, waves[:check])
    diff = max(float(np.abs(vectors[mode][:check] - reference).max()) for mode in vectors)
    sr = encoder.sample_rate
    padded = {mode: sum(len(batch) * (pad if pad is not None else max(len(waves[i]) for i in batch))
                        for batch, pad in batches)
              for mode, batches in plans(waves, batch_seconds, sr).items()}
    result = {
        "name": name, "n": len(waves), "audio_s": sum(len(w) for w in waves) / sr,
        "bucketed_ups": repeats * len(waves) / totals["bucketed"],
        "fixed_ups": repeats * len(waves) / totals["fixed"],
        "padded_ratio": padded["fixed"] / padded["bucketed"], "max_abs_diff": diff,
        "seconds": {m: round(t, 1) for m, t in totals.items()},
    }
    result["speedup"] = result["bucketed_ups"] / result["fixed_ups"]
    return result


def mid_encoder(feature_extractor: object, seed: int = 0) -> AudioEncoder:
    config = Wav2Vec2Config(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
                            feat_extract_norm="layer", do_stable_layer_norm=True, mask_time_prob=0.0)
    torch.manual_seed(seed)
    return AudioEncoder.from_model(Wav2Vec2Model(config).eval(), feature_extractor, "cpu",
                                   name="mid: hidden 256, 4 layers, conv 512×7")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=None,
                        help="where the demo corpus and encoders are written/reused (default: $ERC_CACHE/bench)")
    parser.add_argument("--batch-seconds", type=float, default=64.0, help="padded audio per forward (both modes)")
    parser.add_argument("--mid-utterances", type=int, default=96,
                        help="subset for the mid-size model (evenly spaced in length, so lengths stay representative)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved timed runs per encoder (summed)")
    parser.add_argument("--check", type=int, default=200,
                        help="utterances compared against single-utterance forwards (demo encoder)")
    args = parser.parse_args(argv)

    work = args.work or Path(os.environ.get("ERC_CACHE") or tempfile.gettempdir()) / "erc-bench"
    root = write_demo_corpus(work / "data", seed=0)
    corpus = load_corpus(root, verbose=False)
    audio_dir, _ = build_demo_encoders(work / "encoders", corpus, seed=0)
    t0 = time.perf_counter()
    waves = [load_audio(p, MAX_SECONDS) for p in corpus.utterances["wav_path"]]
    lengths = np.array([len(w) for w in waves]) / 16000
    print(f"demo corpus: {len(waves)} utterances, cropped to {MAX_SECONDS:g} s: mean {lengths.mean():.2f} s, "
          f"median {np.median(lengths):.2f} s (read in {time.perf_counter() - t0:.1f} s); "
          f"torch threads {torch.get_num_threads()}, batch budget {args.batch_seconds:g} s of padded audio")

    demo = load_audio_encoder(audio_dir, "cpu")
    rows = [measure("demo: hidden 64, 2 layers, conv 32×7", demo, waves, args.batch_seconds, args.repeats,
                    args.check)]
    by_length = np.argsort(lengths, kind="stable")
    pick = by_length[np.linspace(0, len(waves) - 1, min(args.mid_utterances, len(waves))).round().astype(int)]
    mid_waves = [waves[i] for i in sorted(pick)]
    mid = mid_encoder(AutoFeatureExtractor.from_pretrained(audio_dir))
    rows.append(measure(mid.name, mid, mid_waves, args.batch_seconds, args.repeats, len(mid_waves)))

    # "padded ratio": padded audio fixed / bucketed, the speed-up when cost is linear in input length
    # (the 512-channel conv stack); attention, quadratic in length, can push past it.
    print(f"\n{'audio encoder':40s} {'utts':>5s} {'audio s':>8s} {'bucketed utt/s':>15s} {'fixed-7s utt/s':>15s} "
          f"{'speedup':>8s} {'padded ratio':>13s} {'max|Δ| vs single':>17s}")
    for r in rows:
        print(f"{r['name']:40s} {r['n']:5d} {r['audio_s']:8.0f} {r['bucketed_ups']:15.1f} {r['fixed_ups']:15.1f} "
              f"{r['speedup']:7.2f}× {r['padded_ratio']:12.2f}× {r['max_abs_diff']:17.2e}")
    print("wall seconds (bucketed / fixed):",
          "; ".join(f"{r['name'].split(':')[0]} {r['seconds']['bucketed']} / {r['seconds']['fixed']}" for r in rows))
    print(json.dumps({
        "bucketed_vs_fixed_speedup_demo": round(rows[0]["speedup"], 3),
        "bucketed_vs_fixed_speedup_mid": round(rows[1]["speedup"], 3),
        "max_abs_diff": float(f"{max(r['max_abs_diff'] for r in rows):.3e}"),
    }))


if __name__ == "__main__":
    main()

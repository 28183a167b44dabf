"""What a finetune trial costs next to a cached-head trial: time per training step and peak memory.

For the demo encoders and a mid-size wav2vec2 + RoBERTa (hidden 256, 4 layers, the standard
512-channel conv stack; random weights, real architectures): one training step of (a) a finetune
trial — both encoders and the tensor-mixer head, :class:`erc.finetune.FinetuneTrainer` — and (b) a
cached-head trial — the same head on pooled vectors, :class:`erc.trainer.Trainer`; same batch size.
Each measurement runs in its own process, so its peak memory (peak RSS above the process's baseline
on a CPU; ``torch.cuda.max_memory_allocated`` on a GPU) is its own.

The GPU figures (paper-size encoders, fp32 vs bf16, peak memory, what ``--gpus-per-trial auto``
chooses, packed vs one trial per GPU) are ``benchmarks/gpu_suite.py``'s, which uses this module's
``measure`` and ``in_process``.

    python benchmarks/finetune_step.py [--steps 3] [--batch-size 8] [--threads 1] [--sizes demo,mid]

The last printed line is a JSON object: per encoder size ``finetune_s``, ``cached_s``, ``ratio``
(finetune / cached time per step), ``finetune_peak_mb``, ``cached_peak_mb``; and ``threads``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark's mid-size encoders

if TYPE_CHECKING:  # the functions import numpy, torch and erc's trainers: --help answers at once
    from erc.encoders import AudioEncoder, TextEncoder
    from erc.table import FeatureTable


def paper_encoders(tokenizer: Any) -> tuple[AudioEncoder, TextEncoder]:
    """wav2vec2-large (xlsr geometry: 24 layers × 1024, stable layer norm) and RoBERTa-large, random weights."""
    from transformers import (
        RobertaConfig,
        RobertaModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
    )

    from erc.data.demo_encoders import random_model
    from erc.encoders import AudioEncoder, TextEncoder

    audio = random_model(Wav2Vec2Model, Wav2Vec2Config(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        feat_extract_norm="layer", conv_bias=True, do_stable_layer_norm=True), seed=0)
    text = random_model(RobertaModel, RobertaConfig(
        vocab_size=32000, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        max_position_embeddings=514, type_vocab_size=1, pad_token_id=tokenizer.pad_token_id), seed=0)
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                  return_attention_mask=True)
    return (AudioEncoder.from_model(audio, fe, "cpu", name="wav2vec2-large-geometry"),
            TextEncoder.from_model(text, tokenizer, "cpu", name="roberta-large-geometry"))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure(spec: dict[str, Any]) -> dict[str, float]:
    """Seconds per training step and peak memory of one trial kind (runs in its own process)."""
    import numpy as np
    import torch
    from head_vs_end_to_end import mid_encoders

    from erc.config import RunConfig
    from erc.encoders import load_text_encoder
    from erc.finetune import FinetuneTrainer
    from erc.inputs import load_inputs
    from erc.trainer import Trainer

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    cuda = device.type == "cuda"
    table = load_inputs(spec["inputs"])
    train, valid = table.split(0)
    # a batch of median-length utterances: what a length-bucketed batch typically holds
    middle = np.argsort(train.wave_len, kind="stable")[len(train) // 2 - spec["batch"] // 2:][: spec["batch"]]
    train, valid = train.subset(middle), valid.subset(np.arange(2))
    tokenizer = load_text_encoder(spec["text_dir"], "cpu").tokenizer
    config = RunConfig.from_flat({"fusion": "outer", "preset": spec["preset"], "batch_size": spec["batch"],
                                  "device": spec["device"], "precision": spec["precision"], "standardise": False,
                                  **({"audio_padding": spec["padding"]} if spec["mode"] == "finetune" else {})})
    baseline = _rss_mb()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    if spec["encoders"] == "demo":
        audio, text = spec["audio_dir"], spec["text_dir"]
        dims = (64, 128)
    else:
        audio, text = (mid_encoders if spec["encoders"] == "mid" else paper_encoders)(tokenizer)
        dims = (audio.dim, text.dim)
    if spec["mode"] == "finetune":
        trainer = FinetuneTrainer(config, train, valid, audio_encoder=audio, text_encoder=text)
    else:
        del audio, text
        trainer = Trainer(config, _vectors(train, dims), _vectors(valid, dims))
    index = torch.arange(spec["batch"], device=device)
    trainer.model.train()
    trainer.train_step(index)  # warm-up: allocations, kernels, optimiser state
    times = []
    for _ in range(spec["steps"]):
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        trainer.train_step(index)
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline)
    # the fastest step: other processes on a shared machine only ever add time
    out = {"step_s": min(times), "peak_mb": peak}
    if cuda:
        out["total_mb"] = torch.cuda.get_device_properties(device).total_memory / 2**20
    return out


def _vectors(rows: Any, dims: tuple[int, int]) -> FeatureTable:
    """The same utterances as cached pooled vectors (random values: the step's cost does not depend on them)."""
    import numpy as np

    from erc.table import FeatureTable

    g = np.random.default_rng(0)
    return FeatureTable(segment_id=rows.segment_id, corpus=rows.corpus, session=rows.session, fold=rows.fold,
                        audio=g.standard_normal((len(rows), dims[0]), dtype=np.float32),
                        text=g.standard_normal((len(rows), dims[1]), dtype=np.float32), votes=rows.votes,
                        majority=rows.majority, valence=rows.valence, arousal=rows.arousal)


def _worker(spec: dict[str, Any], queue: Any) -> None:
    try:
        queue.put(measure(spec))
    except BaseException as err:  # the parent must not wait forever for a crashed child
        queue.put({"error": f"{type(err).__name__}: {err}"})
        raise


def in_process(spec: dict[str, Any], timeout: float = 3600.0) -> dict[str, float]:
    """``measure(spec)`` in a fresh process, so that its peak memory is its own.

    A process that dies without a result (killed: out of memory) or a measurement that runs past
    ``timeout`` seconds is an error, and the process is ended, rather than a wait for good.
    """
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(spec, queue))
    proc.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                result = queue.get(timeout=2)
                break
            except Empty:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"measurement ran past {timeout:.0f} s") from None
                if proc.exitcode is not None and queue.empty():
                    raise RuntimeError(f"a measurement process died without a result (exit code {proc.exitcode})"
                                       ) from None
    except BaseException:
        proc.kill()
        raise
    proc.join(timeout=60)
    if "error" in result:
        raise RuntimeError(f"measurement failed: {result['error']}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement (default 3)")
    parser.add_argument("--batch-size", type=int, default=8, help="the paper's 8 (default)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per trial (default 1, as a trial)")
    parser.add_argument("--sizes", type=lambda t: [x for x in t.split(",") if x], default=["demo", "mid"],
                        help="encoder sizes of the CPU table (default demo,mid)")
    args = parser.parse_args(argv)
    if unknown := set(args.sizes) - {"demo", "mid"}:
        parser.error(f"--sizes: unknown {sorted(unknown)}; choose from demo,mid")
    from erc.data import load_corpus
    from erc.data.demo import write_demo_corpus
    from erc.encoders import build_demo_encoders
    from erc.inputs import build_inputs

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = write_demo_corpus(work / "data", seed=0, kemdy19_sessions=5, kemdy20_sessions=5,
                                 utterances_per_speaker=4)
        corpus = load_corpus(root, verbose=False)
        audio_dir, text_dir = build_demo_encoders(work / "encoders", corpus, seed=0)
        _, inputs = build_inputs(corpus, audio_dir, text_dir, work / "inputs", progress=False)
        base = {"inputs": str(inputs), "audio_dir": str(audio_dir), "text_dir": str(text_dir), "batch": args.batch_size,
                "threads": args.threads, "steps": args.steps, "device": "cpu", "preset": "demo",
                "precision": "fp32", "padding": "bucket"}
        print(f"CPU, {args.threads} thread(s) per trial, batch {args.batch_size} (median-length demo utterances), "
              "tensor-mixer head (demo preset)")
        print(f"{'encoders':<10} {'finetune s/step':>16} {'cached s/step':>14} {'ratio':>8} "
              f"{'finetune peak MiB':>18} {'cached peak MiB':>16}")
        figures: dict[str, Any] = {}
        for sizes in args.sizes:
            ft = in_process({**base, "encoders": sizes, "mode": "finetune"})
            cached = in_process({**base, "encoders": sizes, "mode": "cached", "steps": args.steps * 10})
            figures[sizes] = {"finetune_s": round(ft["step_s"], 4), "cached_s": round(cached["step_s"], 5),
                              "ratio": round(ft["step_s"] / cached["step_s"], 1),
                              "finetune_peak_mb": round(ft["peak_mb"], 1), "cached_peak_mb": round(cached["peak_mb"], 1)}
            f = figures[sizes]
            print(f"{sizes:<10} {f['finetune_s']:>16.3f} {f['cached_s']:>14.5f} {f['ratio']:>7.0f}x "
                  f"{f['finetune_peak_mb']:>18.0f} {f['cached_peak_mb']:>16.0f}")
    figures["threads"] = args.threads
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

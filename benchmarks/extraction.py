"""Feature extraction: batching, where it runs, and every hidden layer (DESIGN §4, §11).

Measured side by side in one run (each part can be left out with ``--parts``):

``bucketing``: the throughput (utterances/s) of the pooled wav2vec2 forward with length-bucketed
batches vs padding every utterance to 7 s, for the demo audio encoder (hidden 64) on the demo
corpus and a mid-size wav2vec2 (hidden 256, 4 layers, the standard 512-channel conv stack) on a
subset, plus the largest |difference| between a pooled vector from a padded batch and the same
utterance run alone. Both strategies get the same padded-audio budget per forward, read the same
in-memory waves, and run interleaved so that background load hits both alike.

``cluster``: ``--extract-on cluster`` (sweeps/extract.py, a Ray Data job) on a local multi-raylet
cluster — a head with no CPU and 1, then 2 worker raylets of 1 CPU each, alternating — first with a
small wav2vec2 (hidden 256, 4 layers, random weights) and the demo text encoder on a subset of the demo
corpus (``cluster_2_vs_1_workers_speedup``), then with the demo encoders on the whole corpus
(``…_demo_encoders``: their ~5 ms per utterance is less than Ray Data's overhead per unit, so that
figure measures the overhead, not the encoders). Throughput is utterances per second from the first vectors back to the
last, i.e. without the job's start-up (actor processes, imports, encoders from the object store),
which is reported beside it.

``layers``: a driver-side build of every hidden layer (``--layers all``) vs the last layer alone,
alternating: time and bytes on disk. Then what float16 storage of the stacks costs a head: a
``weighted`` head (learned softmax over layers) trained on the float16 stacks vs the same float32
stacks, every fold, and the layer weights it learns on the demo.

The last line printed is a JSON object with ``bucketed_vs_fixed_speedup_demo``,
``bucketed_vs_fixed_speedup_mid``, ``max_abs_diff``, ``cluster_2_vs_1_workers_speedup``,
``all_vs_last_layers_time``, ``all_vs_last_layers_bytes``, ``float16_vs_float32_max_metric_diff``
and ``demo_layer_weights`` (for the parts that ran).

    python benchmarks/extraction.py [--work DIR] [--parts bucketing,cluster,layers] [--cluster-jobs small,demo]
                                    [--repeats 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erc.vocab import REGRESSION_METRICS

if TYPE_CHECKING:  # the functions import numpy, torch, transformers and erc's extraction: --help answers at once
    import numpy as np
    import pandas as pd

    from erc.encoders import AudioEncoder
    from erc.features import ExtractionJob

PARTS = ("bucketing", "cluster", "layers")
CLUSTER_JOBS = ("small", "demo")


def plans(waves: list[np.ndarray], batch_seconds: float, sr: int) -> dict[str, list[tuple[list[int], int | None]]]:
    """Batches of both strategies as (utterance indices, pad-to samples or None = pad to the longest).

    bucketed: the feature cache's strategy (sort by length, count × longest ≤ the budget);
    fixed: every utterance padded to 7 s, as many per batch as the same budget allows.
    """
    from erc.audio import MAX_SECONDS
    from erc.features import length_buckets

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
    import numpy as np

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
    import numpy as np

    return np.concatenate([encoder.pool([w]) for w in waves])


def measure(name: str, encoder: AudioEncoder, waves: list[np.ndarray], batch_seconds: float,
            repeats: int, check: int) -> dict:
    """Throughput of both strategies (summed over ``repeats`` interleaved runs) and the max |Δ| of
    their vectors against single-utterance forwards on the first ``check`` utterances."""
    import numpy as np

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
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from erc.data.demo_encoders import random_model
    from erc.encoders import AudioEncoder

    config = Wav2Vec2Config(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
                            feat_extract_norm="layer", do_stable_layer_norm=True, mask_time_prob=0.0)
    model = random_model(Wav2Vec2Model, config, seed=seed)
    return AudioEncoder.from_model(model, feature_extractor, "cpu", name="mid: hidden 256, 4 layers, conv 512×7")


# --------------------------------------------------------------------------------------------------
# cluster extraction: 1 vs 2 worker raylets


def _timed_vectors(job: ExtractionJob, directory: Path) -> Any:
    """Vectors that note when each unit's results arrive (the throughput clock): ``.arrivals``."""
    from erc.features import Vectors

    class TimedVectors(Vectors):
        def __init__(self) -> None:
            super().__init__(job, directory)
            self.arrivals: list[tuple[float, int]] = []

        def put(self, modality: str, rows, vectors, stack=None) -> None:
            super().put(modality, rows, vectors, stack)
            self.arrivals.append((time.perf_counter(), len(rows)))

    return TimedVectors()


def _cluster_run(job: ExtractionJob, work: Path, gpus: bool = False) -> dict[str, float]:
    from sweeps.extract import ClusterExtractor

    with tempfile.TemporaryDirectory(dir=work) as tmp:
        out = _timed_vectors(job, Path(tmp))
        t0 = time.perf_counter()
        info = ClusterExtractor(gpus=gpus)(job, out)
        wall = time.perf_counter() - t0
        assert not out.missing(), out.missing()
    (first, n_first), (last, _) = out.arrivals[0], out.arrivals[-1]
    done = 2 * len(job) - n_first  # audio and text rows after the first unit
    return {"actors": info["actors"], "ups": done / 2 / (last - first), "startup_s": first - t0, "wall_s": wall,
            "vectors": (out.vectors["audio"].copy(), out.vectors["text"].copy())}


def measure_cluster(job: ExtractionJob, work: Path, repeats: int) -> dict:
    """Alternating 1- and 2-worker runs on one local cluster (a worker raylet added and removed)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read when ray is imported: keep 127.0.0.1
    import numpy as np
    import ray
    from ray.cluster_utils import Cluster

    from sweeps.cluster import init_ray
    from sweeps.settings import SweepSettings

    tmp = Path(tempfile.mkdtemp(prefix="rb", dir="/tmp"))  # Ray's socket paths must stay short
    os.environ["RAY_TMPDIR"] = str(tmp)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "node_ip_address": "127.0.0.1",
                                                             "include_dashboard": False})
    runs: dict[int, list[dict]] = {1: [], 2: []}
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        init_ray(SweepSettings(address=cluster.address, cache_dir=tmp, verbose=0))  # joined as a sweep joins
        second = None
        for _ in range(repeats):
            for workers in (1, 2):
                if workers == 2 and second is None:
                    second = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
                    cluster.wait_for_nodes()
                if workers == 1 and second is not None:
                    cluster.remove_node(second)
                    second = None
                    time.sleep(2)  # until the cluster's resources show the node gone
                runs[workers].append(_cluster_run(job, work))
                print(f"cluster, {workers} worker(s): {runs[workers][-1]['ups']:.1f} utt/s after "
                      f"{runs[workers][-1]['startup_s']:.1f} s of start-up ({runs[workers][-1]['wall_s']:.1f} s wall)")
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    assert [r["actors"] for r in runs[1]] == [1] * repeats and [r["actors"] for r in runs[2]] == [2] * repeats
    ups = {w: len(rs) / sum(1 / r["ups"] for r in rs) for w, rs in runs.items()}  # harmonic mean
    wall = {w: float(np.mean([r["wall_s"] for r in rs])) for w, rs in runs.items()}
    local = extract_locally(job)
    diff = max(float(np.abs(r["vectors"][k] - local[k]).max()) for rs in runs.values() for r in rs for k in (0, 1))
    return {"ups": ups, "wall": wall, "speedup": ups[2] / ups[1], "wall_speedup": wall[1] / wall[2],
            "max_abs_diff_vs_driver": diff}


def extract_locally(job: ExtractionJob) -> tuple[np.ndarray, np.ndarray]:
    from erc.features import Vectors, extract_here

    with tempfile.TemporaryDirectory() as tmp:
        out = Vectors(dataclasses.replace(job, progress=False), Path(tmp))
        extract_here(dataclasses.replace(job, progress=False), out)
        return out.vectors["audio"].copy(), out.vectors["text"].copy()


# --------------------------------------------------------------------------------------------------
# every hidden layer


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure_layers(corpus: pd.DataFrame, audio_dir: Path, text_dir: Path, work: Path, repeats: int) -> dict:
    """Driver-side builds, last layer vs every layer, alternating (fresh cache directories)."""
    import numpy as np

    from erc.features import build_features

    seconds: dict[str, list[float]] = {"last": [], "all": []}
    sizes: dict[str, int] = {}
    for _ in range(repeats):
        for layers in ("last", "all"):
            with tempfile.TemporaryDirectory(dir=work) as tmp:
                t0 = time.perf_counter()
                ds = build_features(corpus, audio_dir, text_dir, tmp, layers=layers, device="cpu", progress=False)
                seconds[layers].append(time.perf_counter() - t0)
                sizes[layers] = _tree_bytes(Path(ds.cache_files[0]["filename"]).parent)
    time_ratio = sum(seconds["all"]) / sum(seconds["last"])
    print(f"layers: last {np.mean(seconds['last']):.1f} s, {sizes['last'] / 2**20:.2f} MiB; "
          f"all {np.mean(seconds['all']):.1f} s, {sizes['all'] / 2**20:.2f} MiB")
    return {"time": time_ratio, "bytes": sizes["all"] / sizes["last"], "seconds": seconds, "sizes": sizes}


def measure_float16(corpus: pd.DataFrame, audio_dir: Path, text_dir: Path, epochs: int) -> dict:
    """Weighted heads on float16 vs float32 stacks of the same vectors, every fold; the learned weights."""
    import numpy as np

    from erc.config import RunConfig
    from erc.encoders import load_audio_encoder, load_text_encoder
    from erc.features import ExtractionJob, Vectors, extract_here
    from erc.layers import Layers, layer_weights
    from erc.table import FeatureTable
    from erc.trainer import fit

    utterances = corpus.reset_index(drop=True)
    job = ExtractionJob(utterances["wav_path"].astype(str).tolist(), utterances["text"].astype(str).tolist(),
                        load_audio_encoder(audio_dir, "cpu"), load_text_encoder(text_dir, "cpu"), layers=True,
                        progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        out = Vectors(job, Path(tmp))
        extract_here(job, out)
        stacks = {m: np.array(out.stacks[m]) for m in ("audio", "text")}  # float32, before storing
        base = FeatureTable.from_columns({**{c: utterances[c].tolist() for c in ("segment_id", "corpus", "session",
                                                                                  "fold", "valence", "arousal")},
                                          "votes": np.array(utterances["votes"].tolist()),
                                          "audio_vec": out.vectors["audio"], "text_vec": out.vectors["text"]})
    config = RunConfig.from_flat({"fusion": "outer", "labels": "soft", "epochs": epochs,
                                  "audio_layer": "weighted", "text_layer": "weighted"})
    metrics: dict[str, list[dict]] = {"float16": [], "float32": []}
    weights: list[dict] = []
    for dtype in ("float32", "float16"):
        table = dataclasses.replace(base, **{f"{m}_layers": Layers(s.astype(dtype)) for m, s in stacks.items()})
        for fold in table.folds:
            result = fit(config, *table.split(fold))
            metrics[dtype].append(result.metrics)
            if dtype == "float16":
                weights.append(layer_weights(result.state_dict))
    keys = [k for k in metrics["float32"][0] if k not in ("epoch",)]
    diff = {k: max(abs(a[k] - b[k]) for a, b in zip(metrics["float16"], metrics["float32"], strict=True))
            for k in keys}
    mean_weights = {m: np.mean([w[m] for w in weights], axis=0).round(4).tolist() for m in weights[0]}
    metric_keys = ("acc", "macro_f1", *REGRESSION_METRICS)
    print("weighted head, float16 vs float32 stacks, largest |Δ| over folds: "
          + ", ".join(f"{k} {diff[k]:.4f}" for k in metric_keys))
    print("mean over folds (float32): " + ", ".join(
        f"{k} {np.mean([m[k] for m in metrics['float32']]):.3f}" for k in metric_keys))
    print(f"learned layer weights (mean over folds; layer 0 = embeddings): {mean_weights}")
    return {"max_metric_diff": max(diff[k] for k in metric_keys), "diff": diff, "weights": mean_weights}


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
    parser.add_argument("--parts", type=lambda t: [p for p in t.split(",") if p], default=list(PARTS),
                        help=f"which measurements ({','.join(PARTS)}; default all)")
    parser.add_argument("--cluster-utterances", type=int, default=200,
                        help="cluster part, small wav2vec2: every k-th utterance, about this many")
    parser.add_argument("--cluster-jobs", type=lambda t: [j for j in t.split(",") if j], default=list(CLUSTER_JOBS),
                        help=f"cluster part: which encoders ({','.join(CLUSTER_JOBS)}; default both, each on a "
                             "cluster of its own)")
    parser.add_argument("--head-epochs", type=int, default=15, help="epochs of the float16-vs-float32 heads")
    parser.add_argument("--limit", type=int, default=None,
                        help="every part: every k-th utterance, about this many (a quick check)")
    args = parser.parse_args(argv)
    if unknown := set(args.parts) - set(PARTS):
        parser.error(f"--parts: unknown {sorted(unknown)}; choose from {','.join(PARTS)}")
    if unknown := set(args.cluster_jobs) - set(CLUSTER_JOBS):
        parser.error(f"--cluster-jobs: unknown {sorted(unknown)}; choose from {','.join(CLUSTER_JOBS)}")
    import numpy as np
    import torch
    from transformers import AutoFeatureExtractor

    from erc.audio import MAX_SECONDS, load_audio
    from erc.data import load_corpus
    from erc.data.demo import write_demo_corpus
    from erc.encoders import build_demo_encoders, load_audio_encoder, load_text_encoder
    from erc.features import ExtractionJob

    work = args.work or Path(os.environ.get("ERC_CACHE") or tempfile.gettempdir()) / "erc-bench"
    root = write_demo_corpus(work / "data", seed=0)
    corpus = load_corpus(root, verbose=False)
    audio_dir, text_dir = build_demo_encoders(work / "encoders", corpus, seed=0)
    utterances = corpus.utterances
    if args.limit:
        utterances = utterances.iloc[::max(1, len(utterances) // args.limit)].reset_index(drop=True)
    t0 = time.perf_counter()
    waves = [load_audio(p, MAX_SECONDS) for p in utterances["wav_path"]]
    lengths = np.array([len(w) for w in waves]) / 16000
    print(f"demo corpus: {len(waves)} utterances, cropped to {MAX_SECONDS:g} s: mean {lengths.mean():.2f} s, "
          f"median {np.median(lengths):.2f} s (read in {time.perf_counter() - t0:.1f} s); "
          f"torch threads {torch.get_num_threads()}, batch budget {args.batch_seconds:g} s of padded audio")
    figures: dict[str, Any] = {}
    if "bucketing" in args.parts:
        figures.update(bucketing(args, audio_dir, waves, lengths))
    if "cluster" in args.parts:
        text = load_text_encoder(text_dir, "cpu")
        # The demo encoders do ~5 ms of work per utterance, less than Ray Data's per-unit overhead; the
        # small wav2vec2 (hidden 256, 4 layers) makes the encoder the work, as any real checkpoint does.
        small = utterances.iloc[::max(1, len(utterances) // args.cluster_utterances)].reset_index(drop=True)
        jobs = {"small": lambda: ExtractionJob(
                    small["wav_path"].astype(str).tolist(), small["text"].astype(str).tolist(),
                    mid_encoder(AutoFeatureExtractor.from_pretrained(audio_dir)), text, progress=False),
                "demo": lambda: ExtractionJob(
                    utterances["wav_path"].astype(str).tolist(), utterances["text"].astype(str).tolist(),
                    load_audio_encoder(audio_dir, "cpu"), text, progress=False)}
        for name in args.cluster_jobs:
            job = jobs[name]()
            cluster = measure_cluster(job, work, args.repeats)
            print(f"cluster extraction, {name} encoders ({len(job)} utterances), 2 vs 1 worker raylets (1 CPU "
                  f"each): throughput {cluster['ups'][2]:.1f} vs {cluster['ups'][1]:.1f} utt/s = "
                  f"{cluster['speedup']:.2f}×; whole job {cluster['wall'][2]:.1f} vs {cluster['wall'][1]:.1f} s = "
                  f"{cluster['wall_speedup']:.2f}×; max |Δ| vs the driver's vectors "
                  f"{cluster['max_abs_diff_vs_driver']:.1e}")
            suffix = "" if name == "small" else "_demo_encoders"
            figures[f"cluster_2_vs_1_workers_speedup{suffix}"] = round(cluster["speedup"], 3)
            figures[f"cluster_2_vs_1_workers_wall_speedup{suffix}"] = round(cluster["wall_speedup"], 3)
            figures[f"cluster_vs_driver_max_abs_diff{suffix}"] = float(f"{cluster['max_abs_diff_vs_driver']:.3e}")
    if "layers" in args.parts:
        layers = measure_layers(utterances, audio_dir, text_dir, work, args.repeats)
        half = measure_float16(utterances, audio_dir, text_dir, args.head_epochs)
        figures["all_vs_last_layers_time"] = round(layers["time"], 3)
        figures["all_vs_last_layers_bytes"] = round(layers["bytes"], 3)
        figures["float16_vs_float32_max_metric_diff"] = round(half["max_metric_diff"], 4)
        figures["demo_layer_weights"] = half["weights"]
    print(json.dumps(figures))


def bucketing(args: argparse.Namespace, audio_dir: Path, waves: list[np.ndarray], lengths: np.ndarray) -> dict:
    import numpy as np
    from transformers import AutoFeatureExtractor

    from erc.encoders import load_audio_encoder

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
    return {
        "bucketed_vs_fixed_speedup_demo": round(rows[0]["speedup"], 3),
        "bucketed_vs_fixed_speedup_mid": round(rows[1]["speedup"], 3),
        "max_abs_diff": float(f"{max(r['max_abs_diff'] for r in rows):.3e}"),
    }


if __name__ == "__main__":
    main()

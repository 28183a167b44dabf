"""Feature extraction as a Ray Data batch-inference job over the cluster (DESIGN §11).

:class:`ClusterExtractor` is an :class:`erc.features.Extractor`: ``build_features`` keeps the cache
key, the lock, the completeness check and the atomic publish, and hands it the same
:class:`~erc.features.ExtractionJob` it would run on the driver — the same length buckets and text
batches, the same encoder code — so the vectors, and the cache, do not depend on where they were
computed: a cache built here is a hit for a later driver-side run and vice versa.

The job::

    from_items(one work unit per audio length-bucket and per text batch)
    → map_batches(read_units): tasks on the driver's node (0 CPUs) read and crop the WAVs there,
      so workers need neither the corpus nor its paths
    → map_batches(_Encoder): an actor pool; each actor takes both encoders once from the object
      store — the driver's loaded copies, i.e. exactly the weights the cache key names, so workers
      need no hub access and no model files — on a GPU when the cluster has GPUs, else on CPUs
    → the driver streams each unit's vectors into the build (erc.features.Vectors)

A killed actor is restarted and its unit retried (``RETRIES`` times each, then the job fails with
the error); ``build_features`` publishes nothing until every utterance's vectors have arrived.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.data
from tqdm.auto import tqdm

from erc.features import ExtractionJob, Vectors
from sweeps.units import column, read_units

# Fault injection for tests: "N" kills the first actor that reaches its N-th unit (SIGKILL, once per
# job; the restarted actor goes on), "N:always" kills every actor at its N-th unit.
KILL_ENV = "ERC_EXTRACT_KILL"
# Restarts per actor and retries per unit. Ray Data's default is unlimited, which turns a crash that
# recurs (an out-of-memory on the same long bucket) into a job that never ends.
RETRIES = 3
# Concurrent reading tasks on the driver's node: they take no CPU from Ray's accounting (the head of
# a cluster may have none), so this bounds their processes. Decoding a bucket costs a small fraction
# of encoding it.
READERS = 2


class ExtractionError(RuntimeError):
    """The cluster job failed; no cache was written."""


@dataclass
class ClusterExtractor:
    """Runs an extraction job on the Ray cluster this process is connected to (``ray.init`` first).

    ``gpus``: GPU actors (one GPU each); None = when the cluster has GPUs now. ``actors``: pool size;
    None = one per GPU, or one per ``cpus_per_actor`` CPUs of the cluster.
    """

    actors: int | None = None
    gpus: bool | None = None
    cpus_per_actor: float = 1.0
    kill: str | None = field(default_factory=lambda: os.environ.get(KILL_ENV) or None)
    kill_dir: str | None = None  # where the kill-once marker goes (default: a temporary directory)

    def pool(self) -> tuple[int, bool]:
        """(actors, on GPUs) for the cluster as it is now."""
        resources = ray.cluster_resources()
        gpus = resources.get("GPU", 0) > 0 if self.gpus is None else self.gpus
        if self.actors is not None:
            return self.actors, gpus
        if gpus:
            return max(1, int(resources.get("GPU", 0))), True
        cpus = int(resources.get("CPU", 0) // self.cpus_per_actor)
        if cpus < 1:
            raise ExtractionError(f"the cluster has no CPU for an extraction actor of {self.cpus_per_actor} CPU(s) "
                                  f"and no GPU (resources now: {dict(resources)}); extract on the driver instead")
        return cpus, False

    def __call__(self, job: ExtractionJob, out: Vectors) -> dict[str, Any]:
        if not ray.is_initialized():
            raise ExtractionError("cluster extraction needs a Ray connection (ray.init) first")

        actors, gpus = self.pool()
        units = _units(job)
        # Actors take the encoders from the object store, once each; their CUDA copies are their own.
        job.audio_encoder.to("cpu")
        job.text_encoder.to("cpu")
        shipped = ray.put(dataclasses.replace(job, wav_paths=[], texts=[]))
        context = ray.data.DataContext.get_current()
        saved = context.enable_progress_bars
        context.enable_progress_bars = job.progress
        own_dir = self.kill is not None and self.kill_dir is None
        kill_dir = tempfile.mkdtemp(prefix="erc-kill-") if own_dir else self.kill_dir
        try:
            with warnings.catch_warnings():
                # max_restarts / max_task_retries have no named parameter in Ray 2.60: they are passed as
                # the (deprecated) extra remote args, the way Ray Data's own docs show.
                warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
                dataset = (
                    ray.data.from_items(units, override_num_blocks=len(units))
                    .map_batches(read_units, batch_size=1, num_cpus=0, compute=ray.data.TaskPoolStrategy(READERS),
                                 fn_kwargs={"max_seconds": job.max_seconds,
                                            "sample_rate": job.audio_encoder.sample_rate},
                                 label_selector={"ray.io/node-id": ray.get_runtime_context().get_node_id()})
                    .map_batches(_Encoder, batch_size=1, compute=ray.data.ActorPoolStrategy(size=actors),
                                 num_cpus=1 if gpus else self.cpus_per_actor, num_gpus=1 if gpus else 0,
                                 fn_constructor_kwargs={"job": [shipped], "gpu": gpus, "kill": self.kill,
                                                        "kill_dir": kill_dir,
                                                        "threads": 1 if gpus else max(1, int(self.cpus_per_actor))},
                                 max_restarts=RETRIES, max_task_retries=RETRIES)
                )
            where = f"{actors} {'GPU' if gpus else 'CPU'} actor(s)"
            return {"extracted_on": "cluster", "device": where, "actors": actors, "actor_gpus": int(gpus),
                    **_collect(dataset, job, out, where)}
        finally:
            context.enable_progress_bars = saved
            del shipped
            if own_dir:
                shutil.rmtree(kill_dir, ignore_errors=True)


def _units(job: ExtractionJob) -> list[dict[str, Any]]:
    """One work unit per audio bucket (longest first) and per text batch: the driver's batches."""
    units = [{"kind": "audio", "rows": np.asarray(b, np.int64).tobytes(),
              "inputs": json.dumps([job.wav_paths[i] for i in b])} for b in job.audio_batches()]
    units += [{"kind": "text", "rows": np.asarray(b, np.int64).tobytes(),
               "inputs": json.dumps([job.texts[i] for i in b], ensure_ascii=False)} for b in job.text_batches()]
    return units


def _collect(dataset: Any, job: ExtractionJob, out: Vectors, where: str) -> dict[str, float]:
    """Stream the job's results into ``out``; seconds until the last audio unit, and after it."""
    encoders = {"audio": job.audio_encoder, "text": job.text_encoder}
    t0 = time.perf_counter()
    last_audio = t0
    bars = {kind: tqdm(total=len(job), desc=f"{kind} features ({where})", unit="utt", disable=not job.progress)
            for kind in encoders}
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for kind, rows, vectors, stack in zip(batch["kind"], batch["rows"], batch["vectors"], batch["stack"],
                                                  strict=True):
                rows = np.frombuffer(rows, np.int64)
                enc = encoders[kind]
                vectors = np.frombuffer(vectors, np.float32).reshape(len(rows), enc.dim)
                stack = (np.frombuffer(stack, np.float32).reshape(len(rows), enc.n_layers, enc.dim)
                         if job.layers else None)
                out.put(kind, rows, vectors, stack)
                bars[kind].update(len(rows))
                if kind == "audio":
                    last_audio = time.perf_counter()
    except Exception as err:  # the job's own error (an actor out of retries, a failed read …), restated
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ExtractionError(f"feature extraction on the cluster failed ({type(err).__name__}: {first[:300]}); "
                              "no cache was written. Rerun to try again, or extract on the driver "
                              "(--extract-on driver)") from err
    finally:
        for bar in bars.values():
            bar.close()
    end = time.perf_counter()
    # Units of both kinds interleave across actors: the split is when the last audio unit arrived.
    return {"audio_seconds": round(last_audio - t0, 3), "text_seconds": round(end - last_audio, 3)}


class _Encoder:
    """An actor of the pool: both encoders loaded once, then one work unit per call."""

    def __init__(self, job: list, gpu: bool, threads: int, kill: str | None, kill_dir: str | None) -> None:
        import torch

        torch.set_num_threads(threads)
        self.job: ExtractionJob = ray.get(job[0])  # in a list: Ray Data would not resolve a bare ref here
        device = "cuda" if gpu and torch.cuda.is_available() else "cpu"
        self.job.audio_encoder.to(device)
        self.job.text_encoder.to(device)
        self.calls = 0
        self.kill_at, self.kill_always = None, False
        if kill:
            n, _, mode = kill.partition(":")
            self.kill_at, self.kill_always, self.kill_dir = int(n), mode == "always", Path(kill_dir or ".")

    def _maybe_die(self) -> None:
        self.calls += 1
        if self.kill_at is None or self.calls != self.kill_at:
            return
        if not self.kill_always:
            try:  # the first actor to get here dies; the marker spares every later one
                (self.kill_dir / "killed").open("x").close()
            except FileExistsError:
                return
        os.kill(os.getpid(), signal.SIGKILL)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._maybe_die()
        out: dict[str, list] = {"kind": [], "rows": [], "vectors": [], "stack": []}
        for kind, rows, payload, lengths in zip(batch["kind"], batch["rows"], batch["payload"], batch["lengths"],
                                                strict=True):
            if kind == "audio":
                # copies: the buffers are read-only views of the object store
                waves = [w.copy() for w in np.split(np.frombuffer(payload, np.float32),
                                                    np.cumsum(np.frombuffer(lengths, np.int64))[:-1])]
                vectors, stack = self.job.encode_audio(waves)
            else:
                vectors, stack = self.job.encode_text(json.loads(payload.decode()))
            out["kind"].append(str(kind))
            out["rows"].append(rows)
            out["vectors"].append(np.ascontiguousarray(vectors, np.float32).tobytes())
            out["stack"].append(b"" if stack is None else np.ascontiguousarray(stack, np.float32).tobytes())
        return {key: column(values) for key, values in out.items()}

"""``--gpus-per-trial auto``: measure the sweep's largest trial on a GPU node, then pack trials per GPU.

Before the first trial, one probe per fusion of the grid (the sweep's run configuration at its largest
batch size, on its largest inputs) runs as a whole-GPU Ray task, so a head without a GPU is no obstacle:
it builds the trial's trainer, trains one step and validates once (:func:`erc.probe.step_memory`). The
largest peak decides the fraction (:func:`erc.probe.gpu_fraction`, 20 % headroom). The choice and the
measurement are printed and recorded on the sweep's parent run. ``auto`` (the default) means 0 when the
cluster has no GPU and cannot get one; an explicit fraction always wins.

A cluster joined with ``--address`` that has no GPU node yet is waited for only when its autoscaler can
add a node type that may have one (:func:`sweeps.cluster.autoscaler_node_types`; the wait names the
type); a fixed-size cluster (``ray start`` on CPU machines, ``ray.cluster_utils.Cluster``) or one whose
autoscaler adds CPU nodes only decides at once: 0, trials on CPUs.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import ray
import torch

from erc import contract as C
from erc.config import RunConfig
from erc.probe import HEADROOM, GpuFit, gpu_fraction, step_memory
from sweeps.cluster import addable_node_types, autoscaler_node_types
from sweeps.prepare import Prepared
from sweeps.settings import AUTO, SweepSettings

# Joining a cluster with no GPU node yet (workers that scale from zero): how long the probe may wait
# for the autoscaler to add one before the sweep runs on CPUs.
WAIT_FOR_GPU_S = 900.0
VALID_ROWS = 4  # validation rows in a probe (validation runs without gradients; training sets the peak)
PROBE_CPUS, PROBE_GPUS = 1, 1  # a probe is a whole-GPU task: it measures alone on its GPU


def probe_configs(settings: SweepSettings) -> list[dict[str, Any]]:
    """One flat run config per fusion of the sweep, at the largest batch size any arm uses."""
    base = settings.base_config()
    sizes = [RunConfig.from_flat({**base, **values}).optim.batch_size
             for values in [{}, *settings.arm_hparams.values()]]
    return [{**base, C.FUSION: fusion, C.LABELS: "soft", "batch_size": max(sizes)} for fusion in settings.fusions]


def probe_sample(table: Any, valid_fold: int, batch_size: int) -> Any:
    """The rows of one probe: the ``batch_size`` longest training utterances and a few validation ones."""
    train = np.flatnonzero(table.fold != valid_fold)
    lengths = getattr(table, "wave_len", None)  # input tables (finetune); cached vectors all weigh the same
    if lengths is not None:
        train = train[np.argsort(-lengths[train], kind="stable")]
    valid = np.flatnonzero(table.fold == valid_fold)[:VALID_ROWS]
    return table.subset(np.concatenate([train[:batch_size], valid]))


def run_probe(flat: dict[str, Any], sample: Any, valid_fold: int, settings: dict[str, Any],
              device: str = "cuda") -> dict[str, Any]:
    """One probe (see :func:`erc.probe.step_memory`); runs wherever it is called, a GPU task or a test."""
    from sweeps.trainable import make_trainers, trial_splits

    torch.set_num_threads(1)
    config = RunConfig.from_flat({**flat, "device": device})
    parts = trial_splits(config, sample, [(valid_fold, ())], search=True)  # one step: no dev set needed
    return {**step_memory(lambda: make_trainers(config, parts, settings)[0], torch.device(device)), "pid": os.getpid()}


# A fresh worker per probe, gone once it returns (Ray recycles GPU tasks' workers only when num_gpus is
# given at decoration, not through .options()): a reused worker kept the last probe's CUDA cache, which the
# next probe measured as its own (on an H200 the cached grid's probes read 27.5 GB after the finetune
# grid's), and an idle one would hold that memory beside the packed trials for the whole sweep.
_remote_probe = ray.remote(max_calls=1)(run_probe)


def resolve_gpus_per_trial(settings: SweepSettings, prepared: Prepared, trial_settings: dict[str, Any],
                           track: Any = None) -> float:
    """The GPU fraction per trial: the explicit one, or what the probes measured (Ray must be up)."""
    if settings.gpus_per_trial != AUTO:
        return float(settings.gpus_per_trial)  # type: ignore[arg-type]
    gpus = ray.cluster_resources().get("GPU", 0)
    wait = None
    if not gpus:
        if settings.address is None:
            print("--gpus-per-trial auto: no GPU in this Ray cluster → 0 (trials run on CPUs)")
            _record(track, 0.0, None, "no GPU")
            return 0.0
        types = autoscaler_node_types()
        gpu_types = addable_node_types(types, PROBE_CPUS, PROBE_GPUS)
        if not gpu_types:  # nothing can bring a GPU: waiting would only cost WAIT_FOR_GPU_S
            why = ("no autoscaler that could add a node" if types is None else
                   f"the autoscaler adds no GPU node ({', '.join(sorted(types)) or 'no node type'})")
            print(f"--gpus-per-trial auto: no GPU in this Ray cluster, and {why} → 0 (trials run on CPUs)")
            _record(track, 0.0, None, f"no GPU, and {why}")
            return 0.0
        wait = WAIT_FOR_GPU_S
        print(f"--gpus-per-trial auto: no GPU node yet; waiting up to {WAIT_FOR_GPU_S:.0f} s for the autoscaler "
              f"to add one ({', '.join(gpu_types)}) for the probe (pass an explicit --gpus-per-trial to skip)")
    probes = run_probes(settings, prepared, trial_settings, wait=wait)
    if probes is None:
        print("--gpus-per-trial auto: no GPU node came up → 0 (trials run on CPUs)")
        _record(track, 0.0, None, "no GPU node came up")
        return 0.0
    fit = probe_fit([result for _, result in probes])
    print(fit.describe())
    _record(track, fit.fraction, fit, fit.describe())
    return fit.fraction


def run_probes(settings: SweepSettings, prepared: Prepared, trial_settings: dict[str, Any], *,
               wait: float | None = None, device: str = "cuda") -> list[tuple[dict[str, Any], dict[str, Any]]] | None:
    """The sweep's probes as whole-GPU Ray tasks: (flat config, :func:`run_probe` result) per fusion,
    printed; None when they did not all start and finish within ``wait`` seconds (they are cancelled).

    ``device`` is where a probe computes once placed (``cpu``: a check of the path on logical GPUs).
    """
    fold = settings.folds[0]
    configs = probe_configs(settings)
    refs = [_remote_probe.options(num_gpus=PROBE_GPUS, num_cpus=PROBE_CPUS).remote(
        flat, probe_sample(prepared.table, fold, flat["batch_size"]), fold, trial_settings, device)
        for flat in configs]
    _, pending = ray.wait(refs, num_returns=len(refs), timeout=wait)
    if pending:
        for ref in pending:
            ray.cancel(ref, force=True)
        return None
    results = ray.get(refs)
    for flat, result in zip(configs, results, strict=True):
        peak = "no GPU memory figure" if result["peak_mb"] is None else (
            f"peak {result['peak_mb']:.0f} MiB of {result['total_mb']:.0f} MiB")
        print(f"  probe {flat[C.FUSION]} (batch {flat['batch_size']}) on {result['device']}: {peak}")
    return list(zip(configs, results, strict=True))


def probe_fit(results: list[dict[str, Any]]) -> GpuFit:
    """The packing for the largest probe's peak on the smallest GPU the probes ran on."""
    return gpu_fraction(max(r["peak_mb"] for r in results), min(r["total_mb"] for r in results), headroom=HEADROOM)


def _record(track: Any, fraction: float, fit: GpuFit | None, text: str) -> None:
    """The choice on the sweep's parent run: a tag (what was chosen, and why) and the measured figures."""
    if track is None:
        return
    track.client.set_tag(track.parent_run_id, C.GPUS_PER_TRIAL, str(fraction))
    track.client.set_tag(track.parent_run_id, C.GPUS_PER_TRIAL_WHY, text[:5000])
    if fit is not None:
        for key, value in ((C.GPU_PROBE_PEAK_MEMORY, fit.peak_mb), (C.GPU_TOTAL_MEMORY, fit.total_mb),
                           (C.GPU_TRIALS_PER_GPU, fit.per_gpu)):
            track.client.log_metric(track.parent_run_id, key, float(value))

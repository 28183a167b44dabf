"""How many trials fit on one GPU: one probe step's peak memory and the packing rule (DESIGN §6, §11).

Ray's advice for fractional GPUs is to make sure yourself that the model fits. ``step_memory`` builds a
run, trains it for one step on its largest batch and validates once, and reports the device memory that
took: the CUDA context (measured before any tensor exists) plus the caching allocator's peak reservation.
``gpu_fraction`` then packs as many such trials onto a GPU as fit in all but ``headroom`` of its memory
(20 %: fragmentation across steps, batches longer than the probe's, the allocator's slack), at most
``max_per_gpu``; the fraction per trial is 1/n, rounded down so that n of them never exceed one GPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

HEADROOM = 0.2
MAX_TRIALS_PER_GPU = 8  # beyond this the trials' CPU work, not the GPU memory, is the limit


@dataclass(frozen=True)
class GpuFit:
    fraction: float  # the GPU share each trial requests
    per_gpu: int  # trials that fit on one GPU
    peak_mb: float  # one trial's measured peak
    total_mb: float  # the GPU's memory
    headroom: float
    note: str  # why this packing, in words

    def describe(self) -> str:
        return (f"--gpus-per-trial auto: {self.fraction} ({self.per_gpu} trial(s) per GPU; one trial peaked at "
                f"{self.peak_mb:.0f} MiB of {self.total_mb:.0f} MiB, {self.headroom:.0%} kept free; {self.note})")


def gpu_fraction(peak_mb: float, total_mb: float, *, headroom: float = HEADROOM,
                 max_per_gpu: int = MAX_TRIALS_PER_GPU) -> GpuFit:
    """The largest packing of trials of ``peak_mb`` each into ``(1 - headroom) × total_mb``."""
    if total_mb <= 0 or peak_mb < 0 or not 0 <= headroom < 1 or max_per_gpu < 1:
        raise ValueError(f"bad figures: peak {peak_mb} MiB, total {total_mb} MiB, headroom {headroom}")
    usable = (1.0 - headroom) * total_mb
    if peak_mb > usable:
        n, note = 1, ("does not fit within the headroom: one trial per GPU, and it may run out of memory"
                      if peak_mb > total_mb else "only one fits within the headroom")
    else:
        fits = math.floor(usable / peak_mb) if peak_mb > 0 else max_per_gpu
        n = min(fits, max_per_gpu)
        note = f"capped at {max_per_gpu} per GPU" if fits > max_per_gpu else f"{n} × peak ≤ {usable:.0f} MiB"
    fraction = math.floor(1e4 / n) / 1e4  # n × fraction ≤ 1, so Ray places n per GPU
    return GpuFit(fraction, n, float(peak_mb), float(total_mb), headroom, note)


def step_memory(make_trainer: Callable[[], Any], device: torch.device) -> dict[str, Any]:
    """Build a run with ``make_trainer``, train one step on all its training rows, validate once.

    On CUDA: ``peak_mb`` = the context plus the allocator's peak reservation, ``total_mb`` = the
    device's memory. Elsewhere the step still runs (a check that the configuration builds and trains)
    and the memory figures are None.
    """
    cuda = device.type == "cuda"
    context_mb = None
    if cuda:
        torch.cuda.init()
        torch.zeros(1, device=device)  # creates the context
        torch.cuda.synchronize(device)
        free, total = torch.cuda.mem_get_info(device)
        context_mb = (total - free) / 2**20  # the probe runs alone on its GPU (a whole-GPU task)
        torch.cuda.reset_peak_memory_stats(device)
    trainer = make_trainer()
    trainer.model.train()
    loss = trainer.train_step(torch.arange(len(trainer.train_rows), device=trainer.device))
    trainer.evaluate()
    out: dict[str, Any] = {"loss": loss, "rows": len(trainer.train_rows), "peak_mb": None, "total_mb": None,
                           "device": str(device)}
    if cuda:
        torch.cuda.synchronize(device)
        out.update(peak_mb=context_mb + torch.cuda.max_memory_reserved(device) / 2**20,
                   total_mb=torch.cuda.get_device_properties(device).total_memory / 2**20,
                   context_mb=context_mb, device=torch.cuda.get_device_name(device))
        # the next probe may start on this GPU before this process has exited: leave it only the context
        del trainer
        torch.cuda.empty_cache()
    return out

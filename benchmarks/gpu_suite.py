"""Every GPU figure in one command (issue 26): on one GPU, paper sizes, within about 8 minutes.

    python benchmarks/gpu_suite.py                        # one GPU: the figures at paper sizes
    python benchmarks/gpu_suite.py --device cpu --tiny    # the same code paths on a CPU, tiny models

The encoders are the real architectures at the paper's sizes with random weights, built from configs
(nothing is downloaded): wav2vec2-large-xlsr (24 layers, 1024 hidden, 16 heads, 4096 FFN, the xlsr
conv feature extractor with layer norm) and roberta-large (24 × 1024, 16 heads, 4096, vocabulary 32000
as klue's), saved once so that every measurement loads them as a sweep does; the head is the paper
preset; the corpus is the demo corpus. ``--tiny`` swaps in the demo encoders, the demo head and a small
demo corpus; everything else is the same code. Ray gets exactly one GPU (a logical one on a CPU, so
fractional-GPU requests are scheduled as on a GPU node).

Figures (the last printed line is a JSON object with them):

``finetune_step_s_fp32``, ``finetune_step_s_bf16``
    one end-to-end training step (both encoders + head, ``erc.finetune.FinetuneTrainer``), batch 8
    of median-length utterances zero-padded to 7 s: the fastest of ``--steps`` timed steps after a
    warm-up step, each precision in a fresh process (``benchmarks/finetune_step.py``'s ``measure``).
``peak_memory_mb`` (``peak_memory_mb_bf16``)
    that process's peak: ``torch.cuda.max_memory_allocated`` on a GPU, peak RSS growth on a CPU.
``trials_per_gpu_auto``, ``gpus_per_trial_auto``
    what ``--gpus-per-trial auto`` chooses for the paper's finetune and cached grids (protocol
    ``paper``): the sweep's own probes (``sweeps.gpus.run_probes``, one whole-GPU Ray task per
    fusion at the grid's largest batch on its longest inputs) and packing rule
    (``sweeps.gpus.probe_fit``). A CPU has no memory figure: null there (``auto_probes`` still shows
    each probe's step).
``packed_vs_single_throughput``
    trials per hour of a cached paper-head grid (real Ray Tune through ``sweeps.runner.run_tuner``,
    MLflow tracking and checkpoints as a sweep has them; random vectors of the encoders' widths) with
    the ``auto`` fraction of the cached grid, divided by the same grid at one trial per GPU. On a CPU
    the fraction packs as many trials as there are CPUs (``trials_per_hour`` says which was used).
``extraction_utt_per_s``
    the feature-extraction Ray Data job (``sweeps.extract.ClusterExtractor``, GPU actors) with the
    paper-size wav2vec2 (and the small demo text encoder, so that the figure is the audio's) over the
    demo corpus: utterances per second from the first vectors back to the last, start-up beside it.

Each measurement is tried on its own: one that fails leaves its figures null, its error under
``errors``, and the others still run (exit status 1 then). ``seconds`` is each measurement's wall time;
``--only`` runs some of them (the figures of the others are null).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The sibling benchmarks, used as libraries. They, torch and erc's builders are imported by the functions that
# use them: --help and usage errors answer before any heavy library loads.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Fault injection for tests: this measurement raises before it starts (the others must still run).
FAIL_ENV = "ERC_GPU_SUITE_FAIL"
MEASUREMENTS = ("finetune_fp32", "finetune_bf16", "auto_finetune", "auto_cached", "packed", "extraction")
ON_RAY = MEASUREMENTS[2:]  # these run on the suite's private Ray
PAPER_GRIDS = {"finetune": {"mode": "finetune", "protocol": "paper"}, "cached": {"mode": "cached", "protocol": "paper"}}
BATCH = 8  # the paper's batch size


@dataclass(frozen=True, kw_only=True)
class Sizes:
    """What differs between the paper-size run and ``--tiny``: sizes only, never code paths."""

    name: str
    encoders: str  # "paper": wav2vec2-large-xlsr and roberta-large geometry, random weights; "demo": the demo's
    preset: str  # the head's size preset
    corpus: dict[str, int]  # write_demo_corpus arguments
    grid_folds: int  # folds of the packed/single grid (× the fusions, one label arm)
    grid_epochs: int
    steps: int  # timed finetune steps


PAPER = Sizes(name="paper", encoders="paper", preset="paper", corpus={}, grid_folds=4, grid_epochs=2, steps=3)
TINY = Sizes(name="tiny", encoders="demo", preset="demo",
             corpus={"kemdy19_sessions": 5, "kemdy20_sessions": 5, "utterances_per_speaker": 4},
             grid_folds=1, grid_epochs=1, steps=1)


@dataclass
class Setup:
    """The inputs every measurement shares, built once."""

    work: Path
    device: str
    sizes: Sizes
    root: Path = field(init=False)  # the demo corpus
    corpus: Any = field(init=False)
    audio_dir: Path = field(init=False)  # the measured encoders, saved as a sweep would load them
    text_dir: Path = field(init=False)
    demo_text_dir: Path = field(init=False)
    inputs: Any = field(init=False)  # erc.inputs.InputTable of the corpus
    inputs_dir: Path = field(init=False)

    def build(self) -> None:
        from erc.data import load_corpus
        from erc.data.demo import write_demo_corpus
        from erc.encoders import build_demo_encoders
        from erc.inputs import build_inputs

        self.root = write_demo_corpus(self.work / "data", seed=0, **self.sizes.corpus)
        self.corpus = load_corpus(self.root, verbose=False)
        demo_audio, self.demo_text_dir = build_demo_encoders(self.work / "demo-encoders", self.corpus, seed=0)
        if self.sizes.encoders == "paper":
            self.audio_dir, self.text_dir = save_paper_encoders(self.work / "paper-encoders", self.demo_text_dir)
        else:
            self.audio_dir, self.text_dir = demo_audio, self.demo_text_dir
        self.inputs, self.inputs_dir = build_inputs(self.corpus, self.audio_dir, self.text_dir, self.work / "inputs",
                                                    progress=False)

    def dims(self) -> tuple[int, int]:
        from transformers import AutoConfig

        return tuple(int(AutoConfig.from_pretrained(d).hidden_size) for d in (self.audio_dir, self.text_dir))


def save_paper_encoders(out: Path, demo_text_dir: Path) -> tuple[Path, Path]:
    """``finetune_step.paper_encoders`` on disk: random weights, an xlsr feature extractor, the demo tokenizer
    (the corpus's transcripts; its ids fit the 32000-entry embedding)."""
    import finetune_step

    from erc.encoders import load_text_encoder

    audio, text = finetune_step.paper_encoders(load_text_encoder(demo_text_dir, "cpu").tokenizer)
    audio_dir, text_dir = out / "audio", out / "text"
    audio.model.save_pretrained(audio_dir)
    audio.feature_extractor.save_pretrained(audio_dir)
    text.model.save_pretrained(text_dir)
    text.tokenizer.save_pretrained(text_dir)
    return audio_dir, text_dir


# --------------------------------------------------------------------------------------------------
# the measurements


def finetune_step_figures(setup: Setup, precision: str, timeout: float) -> dict[str, float]:
    """One end-to-end step and its peak memory, in a fresh process (finetune_step.measure)."""
    import finetune_step

    spec = {"inputs": str(setup.inputs_dir), "audio_dir": str(setup.audio_dir), "text_dir": str(setup.text_dir),
            "encoders": "demo",  # measure's name for "the encoders saved in audio_dir / text_dir"
            "mode": "finetune", "batch": BATCH, "threads": 1, "steps": setup.sizes.steps, "device": setup.device,
            "preset": setup.sizes.preset, "precision": precision, "padding": "fixed"}
    r = finetune_step.in_process(spec, timeout=timeout)
    print(f"finetune step, {setup.sizes.name} sizes, {precision}: {r['step_s']:.3f} s, peak {r['peak_mb']:.0f} MiB")
    return {"step_s": round(r["step_s"], 4), "peak_mb": round(r["peak_mb"], 1)}


def grid_settings(setup: Setup, grid: str, **overrides: Any) -> Any:
    from sweeps.settings import SweepSettings

    values = {"data": str(setup.root), "cache_dir": setup.work / "sweeps", "preset": setup.sizes.preset,
              "verbose": 0, **PAPER_GRIDS[grid], **overrides}
    return SweepSettings(**values)


def prepared_for(setup: Setup, grid: str) -> Any:
    """What a sweep of ``grid`` hands its trials: the input table, or random vectors of the encoders' widths."""
    import finetune_step

    from sweeps.prepare import Prepared

    table = setup.inputs if grid == "finetune" else finetune_step._vectors(setup.inputs, setup.dims())
    return Prepared(table=table, corpus_name="demo", audio_encoder=str(setup.audio_dir),
                    text_encoder=str(setup.text_dir), feature_dir=setup.work, excluded_csv=None,
                    audio_source=str(setup.audio_dir), text_source=str(setup.text_dir))


def auto_choice(setup: Setup, grid: str, timeout: float) -> dict[str, Any]:
    """The probes ``--gpus-per-trial auto`` runs for ``grid`` and what it then chooses (None on a CPU)."""
    from sweeps.gpus import probe_fit, run_probes

    settings = grid_settings(setup, grid)
    trial_settings = {"mode": settings.mode, "cpus_per_trial": settings.cpus_per_trial,
                      "audio_encoder": str(setup.audio_dir), "text_encoder": str(setup.text_dir)}
    probes = run_probes(settings, prepared_for(setup, grid), trial_settings, wait=timeout, device=setup.device)
    if probes is None:
        raise TimeoutError(f"the {grid} grid's probes did not finish within {timeout:.0f} s")
    shown = [{"fusion": flat["fusion"], "batch_size": flat["batch_size"], "rows": r["rows"], "loss": r["loss"],
              "peak_mb": r["peak_mb"], "device": r["device"]} for flat, r in probes]
    if any(r["peak_mb"] is None for _, r in probes):
        return {"per_gpu": None, "fraction": None, "probes": shown}
    fit = probe_fit([r for _, r in probes])
    print(f"{grid} grid: {fit.describe()}")
    return {"per_gpu": fit.per_gpu, "fraction": fit.fraction, "probes": shown}


def cpu_stand_in_fraction() -> float:
    """On a CPU (no memory figure): pack as many trials onto the logical GPU as the CPUs can run."""
    import ray

    from erc.probe import MAX_TRIALS_PER_GPU, gpu_fraction

    cpus = int(ray.cluster_resources().get("CPU", 1))
    return gpu_fraction(0.0, 1.0, max_per_gpu=max(1, min(cpus, MAX_TRIALS_PER_GPU))).fraction


def grid_throughput(setup: Setup, fraction: float, label: str) -> dict[str, float]:
    """Trials per hour of the cached paper-head grid, every trial asking for ``fraction`` of the GPU."""
    from sweeps.grid import grid_tuning
    from sweeps.naming import TrialLabels
    from sweeps.runner import close_tracking, open_tracking, run_tuner
    from sweeps.trainable import train_trial

    # one MLflow store and storage for both runs (told apart by name): the store is created once
    settings = grid_settings(setup, "cached", cache_dir=setup.work / "grid", name=label, experiment=label,
                             folds=list(range(setup.sizes.grid_folds)), labels=["soft"],
                             epochs=setup.sizes.grid_epochs, gpus_per_trial=fraction, max_failures=0)
    prepared = prepared_for(setup, "cached")
    track = open_tracking(settings, prepared, label, stage="grid", parent_params={"bench": label})
    space, config = grid_tuning(settings)
    t0 = time.perf_counter()
    outcome = run_tuner(settings, prepared, track, train_trial, space, labels=TrialLabels(), tune_config=config)
    wall = time.perf_counter() - t0
    close_tracking(track, outcome)
    if outcome.finished != outcome.total:
        raise RuntimeError(f"{label}: {outcome.summary()}")
    print(f"grid of {outcome.total} cached {setup.sizes.preset}-head trials at {fraction} GPU each: {wall:.1f} s")
    return {"trials": outcome.total, "wall_s": wall, "per_hour": 3600.0 * outcome.total / wall}


def extraction_throughput(setup: Setup) -> dict[str, Any]:
    """The Ray Data extraction job on the GPU: the measured wav2vec2, the demo text encoder."""
    import extraction

    from erc.encoders import load_audio_encoder, load_text_encoder
    from erc.features import ExtractionJob

    utterances = setup.corpus.utterances
    job = ExtractionJob(utterances["wav_path"].astype(str).tolist(), utterances["text"].astype(str).tolist(),
                        load_audio_encoder(setup.audio_dir, "cpu"), load_text_encoder(setup.demo_text_dir, "cpu"),
                        progress=False)
    r = extraction._cluster_run(job, setup.work, gpus=True)
    print(f"extraction, {setup.sizes.name} wav2vec2 on {r['actors']} GPU actor(s): {r['ups']:.1f} utt/s after "
          f"{r['startup_s']:.1f} s of start-up ({len(job)} utterances, {r['wall_s']:.1f} s wall)")
    return {"utt_per_s": round(r["ups"], 2), "startup_s": round(r["startup_s"], 2), "wall_s": round(r["wall_s"], 2),
            "utterances": len(job), "actors": r["actors"]}


# --------------------------------------------------------------------------------------------------


def gpu_name() -> str | None:
    """The GPU's name from nvidia-smi: asking torch would give this process a CUDA context, and the
    probes count every byte in use on the GPU as their own."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", "0"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip() or None


class Attempts:
    """Runs each measurement on its own: a failure is recorded, the rest go on."""

    def __init__(self, only: tuple[str, ...] = MEASUREMENTS) -> None:
        self.errors: dict[str, str] = {}
        self.seconds: dict[str, float] = {}
        self.only = only
        self.fail = os.environ.get(FAIL_ENV)

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        if name not in (*self.only, "setup", "ray"):
            return None
        t0 = time.perf_counter()
        try:
            if self.fail == name:
                raise RuntimeError(f"injected failure ({FAIL_ENV}={name})")
            return fn()
        except Exception as err:  # noqa: BLE001 - recorded in the JSON; the other figures still run
            traceback.print_exc()
            self.errors[name] = f"{type(err).__name__}: {err}"[:1000]
            print(f"{name} failed: {self.errors[name]}", file=sys.stderr)
            return None
        finally:
            self.seconds[name] = round(time.perf_counter() - t0, 1)


def run_suite(setup: Setup, timeout: float, only: tuple[str, ...] = MEASUREMENTS
              ) -> tuple[dict[str, Any], dict[str, str]]:
    attempt = Attempts(only)
    figures: dict[str, Any] = {"device": setup.device, "sizes": setup.sizes.name,
                               "gpu": gpu_name() if setup.device == "cuda" else None}
    attempt("setup", setup.build)
    if "setup" in attempt.errors:
        attempt.errors.update({name: "setup failed" for name in only})
        return _assemble(figures, {}, attempt), attempt.errors

    results: dict[str, Any] = {}
    for precision in ("fp32", "bf16"):  # before Ray starts: each step has the device to itself
        results[f"finetune_{precision}"] = attempt(f"finetune_{precision}",
                                                   lambda p=precision: finetune_step_figures(setup, p, timeout))
    if not set(only) & set(ON_RAY):
        return _assemble(figures, results, attempt), attempt.errors
    import ray

    from sweeps.cluster import init_ray
    from sweeps.settings import SweepSettings

    # one GPU, also on a machine with more (and a logical one on a CPU)
    attempt("ray", lambda: init_ray(SweepSettings(cache_dir=setup.work, verbose=0), num_gpus=1))
    if "ray" in attempt.errors:
        attempt.errors.update({name: "Ray did not start" for name in only if name in ON_RAY})
        return _assemble(figures, results, attempt), attempt.errors
    try:
        for grid in PAPER_GRIDS:
            results[f"auto_{grid}"] = attempt(f"auto_{grid}", lambda g=grid: auto_choice(setup, g, timeout))

        def packed_vs_single() -> dict[str, Any]:
            cached = results.get("auto_cached")
            if cached is None:
                raise RuntimeError("needs the cached grid's auto fraction (auto_cached failed or was not asked for)")
            auto = cached["fraction"]
            fraction = auto if auto is not None else cpu_stand_in_fraction()
            single, packed = grid_throughput(setup, 1.0, "single"), grid_throughput(setup, fraction, "packed")
            return {"packed": round(packed["per_hour"], 1), "single": round(single["per_hour"], 1),
                    "packed_gpus_per_trial": fraction, "fraction_from": "auto" if auto is not None else "CPUs",
                    "trials": packed["trials"], "ratio": packed["per_hour"] / single["per_hour"]}

        results["packed"] = attempt("packed", packed_vs_single)
        results["extraction"] = attempt("extraction", lambda: extraction_throughput(setup))
    finally:
        ray.shutdown()
    return _assemble(figures, results, attempt), attempt.errors


def _assemble(figures: dict[str, Any], results: dict[str, Any], attempt: Attempts) -> dict[str, Any]:
    def get(name: str, key: str) -> Any:  # None for a measurement that failed or was not asked for
        return (results.get(name) or {}).get(key)

    ratio = get("packed", "ratio")
    figures.update({
        "finetune_step_s_fp32": get("finetune_fp32", "step_s"),
        "finetune_step_s_bf16": get("finetune_bf16", "step_s"),
        "peak_memory_mb": get("finetune_fp32", "peak_mb"),
        "peak_memory_mb_bf16": get("finetune_bf16", "peak_mb"),
        "trials_per_gpu_auto": {grid: get(f"auto_{grid}", "per_gpu") for grid in PAPER_GRIDS},
        "gpus_per_trial_auto": {grid: get(f"auto_{grid}", "fraction") for grid in PAPER_GRIDS},
        "auto_probes": {grid: get(f"auto_{grid}", "probes") for grid in PAPER_GRIDS},
        "packed_vs_single_throughput": None if ratio is None else round(ratio, 3),
        "trials_per_hour": {k: v for k, v in (results.get("packed") or {}).items() if k != "ratio"} or None,
        "extraction_utt_per_s": get("extraction", "utt_per_s"),
        "extraction": results.get("extraction"),
        "seconds": attempt.seconds,
        "errors": attempt.errors,
    })
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="where the models run (default cuda)")
    parser.add_argument("--tiny", action="store_true", help="demo encoders, demo head, a small corpus (a check of "
                        "the code paths, not a measurement)")
    parser.add_argument("--work", type=Path, default=None, help="working directory (default: a temporary one, removed)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds any one step or probe may take")
    parser.add_argument("--only", type=lambda t: tuple(m for m in t.split(",") if m), default=MEASUREMENTS,
                        help=f"these measurements ({','.join(MEASUREMENTS)}; default all)")
    args = parser.parse_args(argv)
    if unknown := set(args.only) - set(MEASUREMENTS):
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {','.join(MEASUREMENTS)}")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here: run on a GPU machine, or pass --device cpu (with --tiny)")
    t0 = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-suite-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        figures, errors = run_suite(Setup(work=work, device=args.device, sizes=TINY if args.tiny else PAPER),
                                    args.timeout, args.only)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    figures["total_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(figures, default=str))
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())

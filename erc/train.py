"""One training run of a fusion head on cached features (DESIGN §3, §5).

``fit(config, train, valid)`` trains the head named by ``config`` on the ``train`` rows of the feature
dataset and evaluates it on ``valid`` after every epoch. It is the unit the sweep layer runs as one
Ray Tune trial; this module knows nothing of Ray or MLflow (``on_epoch`` is the hook they attach to).

Label arms (DESIGN §3): ``hard`` trains on the majority class and leaves out tied utterances
(``majority == -1``); ``soft`` trains on vote shares; ``peakl`` on PeakL-sharpened vote shares.
Validation is the same for every arm: classification metrics and ``cls_loss`` on the utterances with a
unique majority, against that class; regression metrics and ``reg_loss`` on all of them. The
validation losses use the run's own loss function (``cls_coef``, ``focal_gamma``).

Checkpoint selection: the epoch with the best ``select_metric`` (max, or min for losses; the first
such epoch on ties). Every metric of the result comes from that one epoch.

Command line: ``python -m erc.train --features CACHE_DIR --fold 0 --fusion outer --labels peakl``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from erc.labels import hard, peakl, soft
from erc.losses import multitask_loss
from erc.metrics import LOSS_KEYS, METRIC_KEYS, evaluate_outputs, is_better
from erc.model import N_CLASSES, PRESETS, build_head, head_sizes

# Every key fit() understands, with its default. Size keys left at None take the preset's value.
DEFAULT_CONFIG: dict[str, Any] = {
    "fusion": "outer",  # concat | outer
    "labels": "peakl",  # hard | soft | peakl
    "preset": "demo",  # demo | paper (erc.model.PRESETS)
    "proj_dim": None,  # P: both modalities are projected to P
    "patch": None,  # mixer patch side p (P must be a multiple of p)
    "dim": None,  # mixer width
    "depth": None,  # number of mixer blocks
    "token_mult": None,  # token-mixing hidden = token_mult × #tokens
    "channel_mult": None,  # channel-mixing hidden = channel_mult × dim
    # Tensor Fusion Network's constant 1 on a' and t' (projects to P-1, image stays P×P). On by default
    # because the inputs are standardised, which strips the constant component the paper's raw
    # features gave a'⊗t' (see erc.model.TensorMixerHead); False = the literal a'⊗t'.
    "append_one": True,
    "lr": 1e-3,
    "weight_decay": 1e-4,  # AdamW's decoupled weight decay
    "batch_size": 32,
    "epochs": 15,
    "cls_coef": 0.7,  # loss = cls_coef · L_cls + (1 - cls_coef) · L_reg
    "focal_gamma": 0.0,  # 0 = plain cross-entropy
    "dropout": 0.0,  # the paper's mixer (lucidrains' MLPMixer defaults) used none
    "grad_clip": 1.0,  # max global gradient norm (the paper's Lightning trainer: 1); 0 = off
    "seed": 0,
    "select_metric": "acc",  # the paper checkpoints on validation accuracy
    "device": "auto",  # auto | cpu | cuda | cuda:N
}
SIZE_KEYS = ("proj_dim", "patch", "dim", "depth", "token_mult", "channel_mult")
_INT_KEYS = ("proj_dim", "patch", "dim", "depth", "batch_size", "epochs", "seed")
_FLOAT_KEYS = ("token_mult", "channel_mult", "lr", "weight_decay", "cls_coef", "focal_gamma", "dropout", "grad_clip")
_CHOICES = {"fusion": ("concat", "outer"), "labels": ("hard", "soft", "peakl"), "preset": tuple(PRESETS)}
# columns fit() reads from a feature dataset
FEATURE_COLUMNS = ("segment_id", "audio_vec", "text_vec", "votes", "majority", "valence", "arousal")

EpochCallback = Callable[[int, dict[str, float]], None]


class StopTraining(Exception):
    """Raise from ``on_epoch`` to end training early but still get a ``FitResult`` back.

    Any other exception raised by ``on_epoch`` propagates out of ``fit`` unchanged.
    """


def resolve_config(config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults + ``config``, with preset sizes filled in and values checked.

    An unknown key is an error (a typo would otherwise silently train the default).
    """
    config = dict(config or {})
    unknown = sorted(set(config) - set(DEFAULT_CONFIG))
    if unknown:
        raise KeyError(f"unknown config key(s) {unknown}; known keys: {sorted(DEFAULT_CONFIG)}")
    cfg = {**DEFAULT_CONFIG, **config}
    for key, choices in _CHOICES.items():
        if cfg[key] not in choices:
            raise ValueError(f"config[{key!r}] = {cfg[key]!r}; choose from {list(choices)}")
    cfg.update(head_sizes(cfg))
    for key in _INT_KEYS:
        if cfg[key] is not None:
            if float(cfg[key]) != int(cfg[key]):
                raise ValueError(f"config[{key!r}] must be an integer, got {cfg[key]!r}")
            cfg[key] = int(cfg[key])
    for key in _FLOAT_KEYS:
        cfg[key] = float(cfg[key])
    cfg["append_one"] = bool(cfg["append_one"])
    if cfg["select_metric"] not in METRIC_KEYS + LOSS_KEYS:
        raise ValueError(f"config['select_metric'] = {cfg['select_metric']!r}; choose from {METRIC_KEYS + LOSS_KEYS}")
    if not 0.0 <= cfg["cls_coef"] <= 1.0:
        raise ValueError(f"config['cls_coef'] must be in [0, 1], got {cfg['cls_coef']}")
    if cfg["epochs"] < 1 or cfg["batch_size"] < 1:
        raise ValueError("config['epochs'] and config['batch_size'] must be >= 1")
    if cfg["fusion"] == "outer" and cfg["proj_dim"] % cfg["patch"]:
        raise ValueError(f"proj_dim ({cfg['proj_dim']}) must be a multiple of patch ({cfg['patch']})")
    if not (cfg["device"] in ("auto", "cpu") or str(cfg["device"]).startswith("cuda")):
        raise ValueError(f"config['device'] = {cfg['device']!r}; use 'auto', 'cpu' or 'cuda[:N]'")
    return cfg


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ---------------------------------------------------------------------------------------------- data


def as_columns(data: Any) -> dict[str, np.ndarray]:
    """Feature rows as a dict of equal-length numpy columns.

    Accepts a ``datasets.Dataset``, a pandas DataFrame or a mapping of columns (what the sweep layer
    passes through Ray's object store). Vector columns become 2-D float32/int arrays.
    """
    if hasattr(data, "with_format") and hasattr(data, "column_names"):  # datasets.Dataset, without importing it
        cols = [c for c in FEATURE_COLUMNS if c in data.column_names]
        raw = data.select_columns(cols).with_format("numpy")[:]
    elif isinstance(data, pd.DataFrame):
        raw = {c: data[c].to_numpy() for c in FEATURE_COLUMNS if c in data.columns}
    elif isinstance(data, Mapping):
        raw = dict(data)
    else:
        raise TypeError(f"expected a datasets.Dataset, a DataFrame or a dict of columns, got {type(data).__name__}")
    missing = [c for c in ("audio_vec", "text_vec", "votes", "valence", "arousal") if c not in raw]
    if missing:
        raise KeyError(f"feature rows lack column(s) {missing}")
    out: dict[str, np.ndarray] = {}
    for key, value in raw.items():
        arr = np.asarray(value)
        if arr.dtype == object and key in ("audio_vec", "text_vec", "votes"):
            arr = np.stack([np.asarray(v) for v in arr])  # ragged-looking object column of equal vectors
        out[key] = arr
    n = len(out["votes"])
    if any(len(v) != n for v in out.values()):
        raise ValueError(f"columns differ in length: { {k: len(v) for k, v in out.items()} }")
    if "segment_id" not in out:
        out["segment_id"] = np.array([str(i) for i in range(n)])
    if "majority" not in out:
        out["majority"] = hard(out["votes"])
    return out


@dataclass
class _Tensors:
    audio: Tensor  # (N, D_a)
    text: Tensor  # (N, D_t)
    va: Tensor  # (N, 2) valence, arousal
    majority: Tensor  # (N,) class or -1
    cls_target: Tensor | None = None  # (N,) class or (N, 7) distribution (training only)


def _tensors(cols: Mapping[str, np.ndarray], device: torch.device, labels: str | None = None) -> _Tensors:
    t = _Tensors(
        audio=torch.as_tensor(np.asarray(cols["audio_vec"], dtype=np.float32), device=device),
        text=torch.as_tensor(np.asarray(cols["text_vec"], dtype=np.float32), device=device),
        va=torch.as_tensor(
            np.stack([cols["valence"], cols["arousal"]], axis=1).astype(np.float32), device=device
        ),
        majority=torch.as_tensor(np.asarray(cols["majority"], dtype=np.int64), device=device),
    )
    votes = np.asarray(cols["votes"], dtype=np.float64)
    if labels == "hard":
        t.cls_target = t.majority
    elif labels == "soft":
        t.cls_target = torch.as_tensor(soft(votes), dtype=torch.float32, device=device)
    elif labels == "peakl":
        t.cls_target = torch.as_tensor(peakl(soft(votes)), dtype=torch.float32, device=device)
    return t


def _subset(t: _Tensors, keep: Tensor) -> _Tensors:
    return _Tensors(
        t.audio[keep], t.text[keep], t.va[keep], t.majority[keep], None if t.cls_target is None else t.cls_target[keep]
    )


# ---------------------------------------------------------------------------------------------- head I/O


def load_head(config: Mapping[str, Any], state_dict: Mapping[str, Tensor]) -> nn.Module:
    """Rebuild a trained head (in eval mode, on CPU) from its config and ``FitResult.state_dict``.

    Input sizes come from the saved normalisation buffers, so nothing else needs storing.
    """
    cfg = resolve_config(config)
    d_audio = int(state_dict["norm.audio_mean"].shape[0])
    d_text = int(state_dict["norm.text_mean"].shape[0])
    head = build_head(cfg, d_audio, d_text)
    head.load_state_dict(dict(state_dict))
    return head.eval()


@torch.no_grad()
def _forward(head: nn.Module, audio: Tensor, text: Tensor, embed: bool, chunk: int = 1024) -> tuple[Tensor, Tensor | None]:
    """Eval-mode outputs (N, 9) and optionally embeddings (N, E), in chunks to bound memory."""
    was_training = head.training
    head.eval()
    outs, embs = [], []
    for i in range(0, audio.shape[0], chunk):
        a, t = audio[i : i + chunk], text[i : i + chunk]
        if embed:
            e = head.embed(a, t)
            embs.append(e)
            outs.append(head.norm.outputs(head.out(e)))  # same as head(a, t) in eval mode, one pass
        else:
            outs.append(head(a, t))
    head.train(was_training)
    out = torch.cat(outs) if outs else audio.new_zeros(0, N_CLASSES + 2)
    return out, (torch.cat(embs) if embs else None) if embed else None


def _predictions_frame(segment_id: np.ndarray, out: Tensor, t: _Tensors) -> pd.DataFrame:
    out = out.detach().cpu().numpy()
    va = t.va.cpu().numpy()
    return pd.DataFrame(
        {
            "segment_id": np.asarray(segment_id).astype(str),
            "logits": list(out[:, :N_CLASSES]),  # one (7,) float32 array per row
            "target": t.majority.cpu().numpy(),
            "valence_pred": out[:, N_CLASSES],
            "arousal_pred": out[:, N_CLASSES + 1],
            "valence": va[:, 0],
            "arousal": va[:, 1],
        }
    )


def predict(
    head: nn.Module, config: Mapping[str, Any] | None, data: Any, return_embeddings: bool = False
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Predictions (and embeddings) of a head for feature rows.

    Returns the same DataFrame layout as ``FitResult.predictions`` and, with ``return_embeddings``,
    the (N, E) inputs of the head's final Linear (else None). ``config`` only chooses the device.
    """
    device = _device(resolve_config(config)["device"]) if config is not None else next(head.parameters()).device
    head = head.to(device)
    cols = as_columns(data)
    t = _tensors(cols, device)
    out, emb = _forward(head, t.audio, t.text, embed=return_embeddings)
    return _predictions_frame(cols["segment_id"], out, t), (emb.cpu().numpy() if emb is not None else None)


# ---------------------------------------------------------------------------------------------- fit


@dataclass
class FitResult:
    history: list[dict[str, float]]  # one dict per epoch, each with 'epoch' (1-based)
    selected_epoch: int  # epoch with the best select_metric
    metrics: dict[str, float]  # history entry of the selected epoch
    state_dict: dict[str, Tensor]  # head weights + normalisation buffers at the selected epoch (CPU)
    predictions: pd.DataFrame  # validation predictions at the selected epoch
    config: dict[str, Any]  # resolved configuration
    n_train: int  # training utterances used (hard arm: ties left out)
    n_valid: int  # validation utterances (all of them; classification metrics use n_valid_cls)
    n_valid_cls: int  # validation utterances with a unique majority class
    embeddings: np.ndarray | None = None  # (n_valid, E) at the selected epoch, if asked for
    stopped_early: bool = False  # on_epoch raised StopTraining


def fit(
    config: Mapping[str, Any] | None,
    train: Any,
    valid: Any,
    on_epoch: EpochCallback | None = None,
    return_embeddings: bool = False,
) -> FitResult:
    """Train one head on ``train`` rows, validate on ``valid`` after every epoch, keep the selected epoch.

    ``on_epoch(epoch, metrics)`` is called after each epoch with that epoch's validation metrics and
    ``train_loss``; raising ``StopTraining`` there ends training early (other exceptions propagate).
    Deterministic for a given ``seed`` on CPU.
    """
    cfg = resolve_config(config)
    device = _device(cfg["device"])
    torch.manual_seed(cfg["seed"])  # weight init and dropout
    shuffle = torch.Generator().manual_seed(cfg["seed"])  # batch order, independent of the global RNG

    tr_cols, va_cols = as_columns(train), as_columns(valid)
    tr = _tensors(tr_cols, device, cfg["labels"])
    if cfg["labels"] == "hard":
        tr = _subset(tr, tr.majority >= 0)  # the paper removes tied ("deuce") utterances from training
    va = _tensors(va_cols, device)
    if tr.audio.shape[0] == 0:
        raise ValueError("no training utterances left (hard labels drop ties)")
    if va.audio.shape[0] == 0:
        raise ValueError("no validation utterances")
    cls_mask = va.majority >= 0
    va_cls_target = va.majority.clamp_min(0)

    head = build_head(cfg, tr.audio.shape[1], tr.text.shape[1])
    # standardisation fitted on the training rows only; part of the saved state (buffers)
    head.set_normalisation(
        tr.audio.mean(0), tr.audio.std(0), tr.text.mean(0), tr.text.std(0), tr.va.mean(0), tr.va.std(0)
    )
    head.to(device)
    # fused AdamW: one kernel for all parameters; the per-tensor loop dominates small heads' steps on CPU
    opt = torch.optim.AdamW(head.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"], fused=True)

    n, bs = tr.audio.shape[0], cfg["batch_size"]
    history: list[dict[str, float]] = []
    best_value: float | None = None
    best: dict[str, Any] = {}
    stopped = False
    for epoch in range(1, cfg["epochs"] + 1):
        head.train()
        total = 0.0
        order = torch.randperm(n, generator=shuffle).to(device)
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            out = head(tr.audio[idx], tr.text[idx])  # (B, 9)
            parts = multitask_loss(out, tr.cls_target[idx], tr.va[idx], cfg["cls_coef"], cfg["focal_gamma"])
            opt.zero_grad(set_to_none=True)
            parts.loss.backward()
            if cfg["grad_clip"] > 0:
                nn.utils.clip_grad_norm_(head.parameters(), cfg["grad_clip"])
            opt.step()
            total += float(parts.loss.detach()) * idx.numel()

        out, emb = _forward(head, va.audio, va.text, embed=return_embeddings)
        with torch.no_grad():
            vparts = multitask_loss(out, va_cls_target, va.va, cfg["cls_coef"], cfg["focal_gamma"], cls_mask)
        metrics = {
            "epoch": epoch,
            **evaluate_outputs(out.cpu(), va.majority.cpu(), va.va.cpu()),
            "loss": float(vparts.loss),
            "cls_loss": float(vparts.cls_loss) if bool(cls_mask.any()) else math.nan,
            "reg_loss": float(vparts.reg_loss),
            "train_loss": total / n,
        }
        history.append(metrics)
        if not best or is_better(metrics[cfg["select_metric"]], best_value, cfg["select_metric"]):
            # the first epoch is kept even if its metric is NaN, so a result always exists
            best_value = metrics[cfg["select_metric"]]
            best = {
                "epoch": epoch,
                "state_dict": {k: v.detach().cpu().clone() for k, v in head.state_dict().items()},
                "out": out.cpu(),
                "emb": None if emb is None else emb.cpu().numpy(),
            }
        if on_epoch is not None:
            try:
                on_epoch(epoch, dict(metrics))
            except StopTraining:
                stopped = True
                break

    return FitResult(
        history=history,
        selected_epoch=best["epoch"],
        metrics=dict(history[best["epoch"] - 1]),
        state_dict=best["state_dict"],
        predictions=_predictions_frame(va_cols["segment_id"], best["out"], va),
        config=cfg,
        n_train=n,
        n_valid=int(va.audio.shape[0]),
        n_valid_cls=int(cls_mask.sum()),
        embeddings=best["emb"],
        stopped_early=stopped,
    )


# ---------------------------------------------------------------------------------------------- synthetic rows

# Synthetic classes sit on a 3×3 grid of (arousal level, valence level). The audio vector carries the
# arousal level (and the continuous arousal rating), the text vector the valence level (and valence):
# every class shares its audio level with another class and its text level with another, so no
# single modality separates the seven classes — only their combination does.
_SYNTH_GRID = {0: (2, 1), 1: (1, 0), 2: (2, 0), 3: (1, 1), 4: (1, 2), 5: (0, 0), 6: (0, 1)}
_SYNTH_PRIOR = np.array([0.08, 0.07, 0.12, 0.33, 0.18, 0.12, 0.10])


def synthetic_features(
    n: int = 1250,
    d_audio: int = 32,
    d_text: int = 48,
    seed: int = 0,
    noise: float = 2.0,
    agreement: float = 0.5,
    n_sessions: int = 20,
    n_folds: int = 5,
) -> dict[str, np.ndarray]:
    """Feature rows with learnable signal in both modalities, in the feature dataset's columns.

    For tests and benchmarks that must not wait for real encoders. Each utterance has a true class;
    10 raters vote for it with probability ``agreement`` (else uniformly for another class), so ties
    and minority votes occur as in the corpora. Sessions are contiguous blocks; fold = session group.
    """
    rng = np.random.default_rng(seed)
    true = rng.choice(N_CLASSES, size=n, p=_SYNTH_PRIOR)
    a_level = np.array([_SYNTH_GRID[c][0] for c in true])
    v_level = np.array([_SYNTH_GRID[c][1] for c in true])
    arousal = np.clip(1.5 + 1.2 * a_level + 0.5 * rng.standard_normal(n), 1.0, 5.0)
    valence = np.clip(1.5 + 1.2 * v_level + 0.5 * rng.standard_normal(n), 1.0, 5.0)
    # random directions: one per level plus one for the continuous rating, in each modality
    a_dirs, t_dirs = rng.standard_normal((4, d_audio)), rng.standard_normal((4, d_text))
    audio = np.eye(3)[a_level] @ a_dirs[:3] + 0.5 * (arousal - 3)[:, None] * a_dirs[3]
    text = np.eye(3)[v_level] @ t_dirs[:3] + 0.5 * (valence - 3)[:, None] * t_dirs[3]
    audio = audio + noise * rng.standard_normal((n, d_audio))
    text = text + noise * rng.standard_normal((n, d_text))
    probs = np.full((n, N_CLASSES), (1 - agreement) / (N_CLASSES - 1))
    probs[np.arange(n), true] = agreement
    votes = np.stack([rng.multinomial(10, p) for p in probs])
    session = np.arange(n) * n_sessions // n
    return {
        "segment_id": np.array([f"Synth{s + 1:02d}_{i:05d}" for i, s in enumerate(session)]),
        "audio_vec": audio.astype(np.float32),
        "text_vec": text.astype(np.float32),
        "votes": votes.astype(np.int64),
        "majority": hard(votes).astype(np.int64),
        "valence": valence.astype(np.float32),
        "arousal": arousal.astype(np.float32),
        "fold": (session * n_folds // n_sessions).astype(np.int64),
        "corpus": np.array(["synthetic"] * n),
        "session": session.astype(np.int64),
    }


def split_fold(cols: Mapping[str, np.ndarray], fold: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(train, valid) column dicts: validation = rows of ``fold``, training = every other fold."""
    folds = np.asarray(cols["fold"])
    return {k: np.asarray(v)[folds != fold] for k, v in cols.items()}, {
        k: np.asarray(v)[folds == fold] for k, v in cols.items()
    }


# ---------------------------------------------------------------------------------------------- CLI

_TABLE_KEYS = ("epoch", "train_loss", "loss", "cls_loss", "reg_loss", "acc", "macro_f1", "micro_f1", "auroc",
               "ccc_valence", "ccc_arousal")


def _format_row(metrics: Mapping[str, float]) -> str:
    cells = []
    for key in _TABLE_KEYS:
        width = max(len(key), 6)
        value = metrics[key]
        cells.append(f"{value:>{width}d}" if key == "epoch" else f"{value:>{width}.4f}")
    return "  ".join(cells)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m erc.train",
        description="Train one fusion head on cached features for one validation fold and print per-epoch "
        "validation metrics (the equivalent of the paper's train.py).",
    )
    parser.add_argument("--features", required=True, help="directory of a saved feature dataset (datasets.save_to_disk)")
    parser.add_argument("--fold", type=int, default=0, help="validation fold; training uses every other fold")
    parser.add_argument("--fusion", choices=_CHOICES["fusion"], default=DEFAULT_CONFIG["fusion"])
    parser.add_argument("--labels", choices=_CHOICES["labels"], default=DEFAULT_CONFIG["labels"])
    parser.add_argument("--preset", choices=_CHOICES["preset"], default=DEFAULT_CONFIG["preset"])
    parser.add_argument("--epochs", type=int, default=DEFAULT_CONFIG["epochs"])
    parser.add_argument("--lr", type=float, default=DEFAULT_CONFIG["lr"])
    parser.add_argument("--batch-size", type=int, default=DEFAULT_CONFIG["batch_size"])
    parser.add_argument("--seed", type=int, default=DEFAULT_CONFIG["seed"])
    parser.add_argument("--select-metric", default=DEFAULT_CONFIG["select_metric"],
                        choices=METRIC_KEYS + LOSS_KEYS)
    parser.add_argument("--device", default=DEFAULT_CONFIG["device"], help="auto | cpu | cuda[:N]")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other config key (JSON value), e.g. --set focal_gamma=2 --set append_one=true; "
                        f"keys: {', '.join(DEFAULT_CONFIG)}")
    parser.add_argument("--save", metavar="PATH", help="write {'config', 'state_dict', 'metrics'} with torch.save")
    args = parser.parse_args(argv)

    config: dict[str, Any] = {
        "fusion": args.fusion, "labels": args.labels, "preset": args.preset, "epochs": args.epochs,
        "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed, "select_metric": args.select_metric,
        "device": args.device,
    }
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set expects KEY=VALUE, got {item!r}")
        config[key] = _parse_value(value)
    try:
        config = resolve_config(config)
    except (KeyError, ValueError) as exc:
        parser.error(str(exc))

    import datasets  # only the command line reads from disk

    ds = datasets.load_from_disk(args.features)
    if "fold" not in ds.column_names:
        parser.error(f"{args.features} has no 'fold' column")
    folds = np.asarray(ds.with_format("numpy")["fold"])
    cols = as_columns(ds)
    if args.fold not in set(folds.tolist()):
        parser.error(f"fold {args.fold} not in the dataset (folds: {sorted(set(folds.tolist()))})")
    train, valid = split_fold({**cols, "fold": folds}, args.fold)
    print(f"features: {args.features}  fold {args.fold}: {len(train['votes'])} train / {len(valid['votes'])} valid")
    print("config: " + json.dumps(config))
    header = "  ".join(f"{k:>{max(len(k), 6)}}" for k in _TABLE_KEYS)
    print(header)
    print("-" * len(header))
    result = fit(config, train, valid, on_epoch=lambda epoch, m: print(_format_row(m), flush=True))
    print("-" * len(header))
    print(f"selected epoch {result.selected_epoch} (best {config['select_metric']}); "
          f"train n={result.n_train}, valid n={result.n_valid} ({result.n_valid_cls} with a unique majority)")
    print(_format_row(result.metrics))
    if args.save:
        torch.save({"config": result.config, "state_dict": result.state_dict, "metrics": result.metrics}, args.save)
        print(f"saved head to {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training a fusion head on cached features (DESIGN §3, §5): one step, one evaluation, one epoch.

``Trainer(config, train, valid)`` owns a run: the head, its optimiser and one random generator
seeded from ``config.seed`` (weights, batch order and dropout all draw from it, so a seed gives the
same numbers in one thread, in threads side by side, or in another process). ``run_epoch()``
trains one epoch, validates, and returns that epoch's metrics; ``fit`` is a loop over it. Nothing
here knows of Ray or MLflow: the sweep layer steps a ``Trainer`` itself or passes ``on_epoch``.

Label arms (DESIGN §3): ``hard`` trains on the majority class and leaves out tied utterances;
``soft`` trains on vote shares; ``peakl`` on PeakL-sharpened vote shares. Validation is the same for
every arm: classification metrics and ``cls_loss`` on the utterances with a unique majority,
against that class; regression metrics and ``reg_loss`` on all of them.

Selection (DESIGN §14): the epoch with the best ``select_metric`` (max, or min for losses; the first
such epoch on ties) on the *selection set*: the ``dev`` rows when given (a split carved from the
training sessions, :meth:`erc.table.Rows.split_for`) and ``select_on='dev'``, else the held-out
``valid`` rows themselves (``select_on='valid'``, the paper's way). Every metric of the result comes
from that one epoch, on the held-out rows. With ``patience`` > 0 training stops once that many epochs
have passed without a better one on the selection set (early stopping). Beside it the trainer tracks
the *oracle* epoch — the one ``select_metric`` picks on the held-out rows — so the optimism of selecting
on the reported data can be stated; with ``select_on='valid'`` the two are the same epoch.

After training, :meth:`Trainer.robustness` evaluates the selected weights on the held-out rows with one
modality missing or noisy (:mod:`erc.robustness`).

Protocol items (:mod:`erc.protocol`): ``valid_ties='excluded'`` leaves tied utterances out of
validation altogether (the paper's evaluation); ``standardise=False`` feeds raw vectors; the
``cosine_restarts`` schedule steps after every optimisation step; ``precision='bf16'`` runs the
forward passes under autocast (losses and metrics in fp32).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from erc.config import RunConfig
from erc.heads import BaseHead, build_head, get
from erc.labels import peakl, soft
from erc.layers import head_input_of, n_layers
from erc.losses import multitask_loss
from erc.metrics import is_better, validation_metrics
from erc.optim import EarlyStopping, autocast, make_optimizer, make_scheduler
from erc.predict import Predictions, device_of, forward
from erc.protocol import check_cached
from erc.table import FeatureTable
from erc.vocab import REGRESSION_METRICS

EpochCallback = Callable[[int, dict[str, float]], None]


class StopTraining(Exception):
    """Raise from ``on_epoch`` to end training early but still get a ``FitResult`` back."""


@dataclass
class FitResult:
    history: list[dict[str, float]]  # one dict per epoch of the held-out rows, each with 'epoch' (1-based)
    selected_epoch: int  # epoch with the best select_metric on the selection set (selected_on)
    metrics: dict[str, float]  # history entry of the selected epoch (held-out values)
    state_dict: dict[str, Tensor]  # head weights + normalisation buffers at the selected epoch (CPU)
    predictions: Predictions  # validation predictions at the selected epoch
    config: RunConfig
    n_train: int  # training utterances used (hard arm: ties left out)
    n_valid: int  # validation utterances (all; classification metrics use n_valid_cls of them)
    n_valid_cls: int  # validation utterances with a unique majority class
    embeddings: np.ndarray | None = None  # (n_valid, E) at the selected epoch, if asked for
    stopped_early: bool = False  # on_epoch raised StopTraining, or early stopping ended the run
    dev_history: list[dict[str, float]] = field(default_factory=list)  # per epoch on the dev rows (if any)
    selected_on: str = "valid"  # "dev" or "valid": the rows the epoch was chosen on
    oracle_epoch: int = 0  # epoch with the best select_metric on the held-out rows themselves
    n_dev: int = 0  # dev utterances (0: no dev set)
    robust: dict[str, dict[str, float]] | None = None  # robustness condition -> held-out metrics, if asked for

    @property
    def oracle_metrics(self) -> dict[str, float]:
        """Held-out values at the epoch chosen on the held-out rows (optimistic unless selected_on='valid')."""
        return dict(self.history[self.oracle_epoch - 1])


# ---------------------------------------------------------------- a corpus's class set and dimensions (issue 24)


def fit_to_rows(config: RunConfig, rows: Any) -> RunConfig:
    """``config`` with the head's output layout taken from the rows' corpus: one logit per class of its
    class set, then its dimensions (none for a corpus without them). KEMDy's config comes back as it is.

    Without dimensions a regression metric or ``reg_loss`` cannot select the epoch: an error says so.
    """
    n_classes, n_dimensions = len(rows.classes), len(rows.dimensions)
    if not n_dimensions and config.select_metric in (*REGRESSION_METRICS, "reg_loss"):
        raise ValueError(f"select_metric={config.select_metric!r} needs valence/arousal ratings, which the "
                         f"corpus ({', '.join(sorted(set(rows.corpus.tolist())))}) does not have")
    if (config.head.n_classes, config.head.n_dimensions) == (n_classes, n_dimensions):
        return config
    return config.replace(n_classes=n_classes, n_dimensions=n_dimensions)


# ----------------------------------------------------------------


def training_rows(rows: FeatureTable, labels: str) -> FeatureTable:
    """The rows an arm trains on: the paper removes tied ("deuce") utterances from hard training."""
    return rows.subset(rows.majority >= 0) if labels == "hard" else rows


def class_targets(rows: FeatureTable, labels: str) -> np.ndarray:
    """(N,) classes for ``hard``, (N, classes) distributions for ``soft`` and ``peakl`` (K = the class count)."""
    if labels == "hard":
        return rows.majority
    shares = soft(rows.votes.astype(np.float64))
    return (peakl(shares, shares.shape[1]) if labels == "peakl" else shares).astype(np.float32)


class Trainer:
    """One run of a head on cached features: ``run_epoch()`` until ``done``, then ``result()``.

    The loop (batches, loss, clipping, schedule, validation, selection, early stopping, checkpoint
    state) is shared with :class:`erc.finetune.FinetuneTrainer`, which overrides the hooks that
    differ: ``_setup`` (inputs and model), ``_param_groups``, ``_batches``, ``_train_output``,
    ``_valid_output``.
    """

    def __init__(self, config: RunConfig, train: FeatureTable, valid: FeatureTable, *,
                 dev: FeatureTable | None = None, keep_embeddings: bool = False) -> None:
        config = fit_to_rows(config, train)  # the head's outputs follow the corpus's class set and dimensions
        self.config = config
        self.device = device_of(config.device)
        self.keep_embeddings = keep_embeddings
        self._check_config()
        train = training_rows(train, config.loss.labels)
        if config.protocol.valid_ties == "excluded":  # the paper: ties out of every validation metric
            valid = valid.subset(valid.majority >= 0)
            dev = None if dev is None else dev.subset(dev.majority >= 0)
        if len(train) == 0:
            raise ValueError("no training utterances" + (" (hard labels drop ties)" if config.loss.labels == "hard"
                                                          else ""))
        if len(valid) == 0:
            raise ValueError("no validation utterances")
        if dev is not None and len(dev) == 0:
            raise ValueError("no dev utterances")
        self.train_rows, self.valid_rows, self.dev_rows = train, valid, dev
        # the rows the epoch is chosen on: a library caller that passes no dev set selects on the
        # held-out rows, and the result says so (selected_on)
        self.selected_on = "dev" if dev is not None and config.protocol.select_on == "dev" else "valid"
        dev = self.device
        self.va = torch.as_tensor(train.va, device=dev)
        self.target = torch.as_tensor(class_targets(train, config.loss.labels), device=dev)
        self.valid_va = torch.as_tensor(valid.va, device=dev)
        self.valid_majority = torch.as_tensor(valid.majority, device=dev)
        if self.dev_rows is not None:
            self.dev_va = torch.as_tensor(self.dev_rows.va, device=dev)
            self.dev_majority = torch.as_tensor(self.dev_rows.majority, device=dev)

        self.generator = torch.Generator().manual_seed(config.seed)  # weights and batch order
        self.head: BaseHead
        self.model: nn.Module  # what is trained and checkpointed (the head here)
        self._setup(train, valid)
        self._dev_inputs = None if self.dev_rows is None else self._eval_inputs(self.dev_rows)
        self.dropout_generator = torch.Generator(device=dev).manual_seed(config.seed + 1)
        self.head.use_generator(self.dropout_generator)
        self.optimizer = make_optimizer(self._param_groups(), config.optim)
        self.scheduler = make_scheduler(self.optimizer, config.optim)
        self.stopping = EarlyStopping(config.optim.patience)
        self.history: list[dict[str, float]] = []
        self.dev_history: list[dict[str, float]] = []
        self._best: dict[str, Any] | None = None
        self._oracle: dict[str, Any] | None = None  # {"epoch", "value"} chosen on the held-out rows

    # ---------------------------------------------------------------- hooks (cached features)

    def _check_config(self) -> None:
        check_cached(self.config.to_flat())

    def _setup(self, train: FeatureTable, valid: FeatureTable) -> None:
        dev, config = self.device, self.config
        # the encoder layer(s) each modality reads (erc.layers): (N, D) tensors, or gathered per batch
        # (a layer mix's stacks, a sequence head's token sequences)
        self.audio, self.text = self._eval_inputs(train)
        self.valid_audio, self.valid_text = self._eval_inputs(valid)
        head = build_head(config.head, self.audio.shape[-1], self.text.shape[-1], layers=config.layers,
                          n_layers=(n_layers(self.audio), n_layers(self.text)))
        head.reset_parameters(self.generator)
        if config.head.standardise:
            # fitted on the training rows only; part of the saved state (buffers)
            head.fit_normalisation(self.audio, self.text, self.va)
        self.head = self.model = head.to(dev)

    def _param_groups(self) -> Any:
        return self.model.parameters()

    def _batches(self) -> list[Tensor]:
        """One epoch's batches of training-row positions, in a seeded random order."""
        n, bs = len(self.train_rows), self.config.optim.batch_size
        order = torch.randperm(n, generator=self.generator).to(self.device)
        return [order[start : start + bs] for start in range(0, n, bs)]

    def _train_output(self, index: Tensor) -> Tensor:
        return self.head(self.audio[index], self.text[index])  # (B, outputs)

    def _eval_inputs(self, rows: FeatureTable) -> Any:
        """What :meth:`_eval_output` needs to run the model on ``rows`` (here: the head's inputs)."""
        return head_input_of(get(self.config.head.fusion), rows, self.config.layers, self.device)

    def _eval_output(self, inputs: Any, embed: bool = False) -> tuple[Tensor, Tensor | None]:
        audio, text = inputs
        return forward(self.head, audio, text, embed=embed)

    def _valid_output(self) -> tuple[Tensor, Tensor | None]:
        return self._eval_output((self.valid_audio, self.valid_text), embed=self.keep_embeddings)

    # ---------------------------------------------------------------- the loop

    @property
    def epoch(self) -> int:
        return len(self.history)

    @property
    def done(self) -> bool:
        return self.epoch >= self.config.optim.epochs or self.stopping.stop

    def train_step(self, index: Tensor) -> float:
        """One optimisation step on the training rows ``index``; returns the batch loss."""
        cfg = self.config
        with autocast(self.device, cfg.optim.precision):
            out = self._train_output(index)
        loss = multitask_loss(out.float(), self.target[index], self.va[index], cfg.loss.cls_coef,
                              cfg.loss.focal_gamma, focal=cfg.loss.focal).loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]],
                                     cfg.optim.grad_clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()  # per optimisation step, as the paper's Lightning module did
        return float(loss.detach())

    def train_epoch(self) -> float:
        """One pass over the training rows; the mean training loss."""
        self.model.train()
        total = 0.0
        for index in self._batches():
            total += self.train_step(index) * index.numel()
        return total / len(self.train_rows)

    def evaluate(self) -> tuple[dict[str, float], Tensor, Tensor | None]:
        """Validation metrics, the (N, outputs) outputs and (optionally) the embeddings of the current model."""
        with autocast(self.device, self.config.optim.precision):
            out, emb = self._valid_output()
        out = out.float()
        emb = None if emb is None else emb.float()
        return validation_metrics(out, self.valid_majority, self.valid_va, self.config.loss), out, emb

    def evaluate_dev(self) -> dict[str, float]:
        """The current model's metrics on the dev rows."""
        if self._dev_inputs is None:
            raise RuntimeError("this trainer has no dev rows")
        with autocast(self.device, self.config.optim.precision):
            out, _ = self._eval_output(self._dev_inputs)
        return validation_metrics(out.float(), self.dev_majority, self.dev_va, self.config.loss)

    def run_epoch(self) -> dict[str, float]:
        """Train one epoch, validate, keep the state if it is the best so far; that epoch's metrics."""
        train_loss = self.train_epoch()
        metrics, out, emb = self.evaluate()
        metrics = {"epoch": self.epoch + 1, **metrics, "train_loss": train_loss}
        self.history.append(metrics)
        if self._dev_inputs is not None:
            self.dev_history.append({"epoch": metrics["epoch"], **self.evaluate_dev()})
        metric = self.config.select_metric
        chosen_on = self.dev_history[-1] if self.selected_on == "dev" else metrics
        # the first epoch is kept even if its metric is NaN, so a result always exists
        if self._oracle is None or is_better(metrics[metric], self._oracle["value"], metric):
            self._oracle = {"epoch": metrics["epoch"], "value": metrics[metric]}
        improved = self._best is None or is_better(chosen_on[metric], self._best["value"], metric)
        if improved:
            self._best = {
                "epoch": metrics["epoch"],
                "value": chosen_on[metric],
                "state_dict": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                "out": out.cpu(),
                "emb": None if emb is None else emb.cpu().numpy(),
            }
        self.stopping.update(improved)
        return dict(metrics)

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly: weights, optimiser, schedule, generators,
        early-stopping counter, history and the best epoch so far."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "dropout_generator": self.dropout_generator.get_state(),
            "stopping": self.stopping.state_dict(),
            "history": list(self.history),
            "dev_history": list(self.dev_history),
            "best": self._best,
            "oracle": self._oracle,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        self.dropout_generator.set_state(state["dropout_generator"])
        self.stopping.load_state_dict(state["stopping"])
        self.history = list(state["history"])
        self.dev_history = list(state.get("dev_history", []))
        self._best = state["best"]
        self._oracle = state.get("oracle")

    def result(self, stopped_early: bool | None = None) -> FitResult:
        if self._best is None:
            raise RuntimeError("no epoch has run yet")
        best = self._best
        return FitResult(
            history=list(self.history),
            selected_epoch=best["epoch"],
            metrics=dict(self.history[best["epoch"] - 1]),
            state_dict=best["state_dict"],
            predictions=Predictions.of(self.valid_rows, best["out"]),
            config=self.config,
            n_train=len(self.train_rows),
            n_valid=len(self.valid_rows),
            n_valid_cls=int((self.valid_rows.majority >= 0).sum()),
            embeddings=best["emb"],
            stopped_early=self.stopping.stop if stopped_early is None else stopped_early,
            dev_history=list(self.dev_history),
            selected_on=self.selected_on,
            oracle_epoch=self._oracle["epoch"] if self._oracle is not None else best["epoch"],
            n_dev=0 if self.dev_rows is None else len(self.dev_rows),
        )

    @torch.no_grad()
    def robustness(self, levels: tuple[float, ...] | None = None) -> dict[str, dict[str, float]]:
        """The held-out metrics of the selected epoch's weights with one modality missing or noisy
        (:func:`erc.robustness.robustness`); the model's current weights are restored afterwards."""
        from erc.robustness import NOISE_LEVELS, robustness

        with self._selected_weights():
            return robustness(self.head, self.train_rows, self.valid_rows, config=self.config,
                              levels=NOISE_LEVELS if levels is None else levels, device=self.device)

    @contextmanager
    def _selected_weights(self) -> Iterator[None]:
        if self._best is None:
            raise RuntimeError("no epoch has run yet")
        current = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self._best["state_dict"])
        try:
            yield
        finally:
            self.model.load_state_dict(current)


def fit(config: RunConfig, train: FeatureTable, valid: FeatureTable, *, dev: FeatureTable | None = None,
        on_epoch: EpochCallback | None = None, return_embeddings: bool = False,
        robustness: bool = False) -> FitResult:
    """Train on ``train``, validate on ``valid`` after every epoch, return the selected epoch.

    ``dev``: the rows the epoch is chosen on (``select_on='dev'``); without it the held-out ``valid``
    rows choose. ``on_epoch(epoch, metrics)`` sees each epoch's validation metrics and ``train_loss``;
    raising ``StopTraining`` there ends training early (other exceptions propagate). ``robustness``:
    fill ``FitResult.robust`` (:meth:`Trainer.robustness`).
    """
    trainer = Trainer(config, train, valid, dev=dev, keep_embeddings=return_embeddings)
    stopped: bool | None = None
    while not trainer.done:
        metrics = trainer.run_epoch()
        if on_epoch is not None:
            try:
                on_epoch(trainer.epoch, metrics)
            except StopTraining:
                stopped = True
                break
    result = trainer.result(stopped_early=stopped)
    if robustness:
        result.robust = trainer.robustness()
    return result

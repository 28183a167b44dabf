"""Command line for one training run: ``python -m erc.train --features DIR --fold 0 --fusion outer``.

The equivalent of the paper's train.py on cached features: trains one head (:func:`erc.trainer.fit`)
for one validation fold and prints every epoch's validation metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

import torch

from erc.config import FLAT_KEYS, RunConfig
from erc.trainer import fit
from erc.vocab import LABEL_ARMS, LOSS_KEYS, METRIC_KEYS, PRESET_NAMES, fusion_names

# one line per epoch: the training loss first, then the validation losses and metrics
_TABLE_KEYS = ("epoch", "train_loss", *(k for k in LOSS_KEYS if k != "train_loss"), *METRIC_KEYS)


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
    defaults = RunConfig().to_flat()
    parser = argparse.ArgumentParser(prog="python -m erc.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", required=True,
                        help="directory of one cached feature dataset (erc.features writes it)")
    parser.add_argument("--fold", type=int, default=0, help="validation fold; training uses every other fold")
    parser.add_argument("--fusion", choices=fusion_names(), default=defaults["fusion"])
    parser.add_argument("--labels", choices=LABEL_ARMS, default=defaults["labels"])
    parser.add_argument("--preset", choices=PRESET_NAMES, default=defaults["preset"])
    parser.add_argument("--epochs", type=int, default=defaults["epochs"])
    parser.add_argument("--seed", type=int, default=defaults["seed"])
    parser.add_argument("--select-metric", default=defaults["select_metric"], choices=(*METRIC_KEYS, *LOSS_KEYS))
    parser.add_argument("--device", default=defaults["device"], help="auto | cpu | cuda[:N]")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other config key (JSON value), e.g. --set lr=3e-4 --set append_one=false; "
                        f"keys: {', '.join(FLAT_KEYS)}")
    parser.add_argument("--save", metavar="PATH", help="write {'config', 'state_dict', 'metrics'} with torch.save")
    args = parser.parse_args(argv)

    flat: dict[str, Any] = {"fusion": args.fusion, "labels": args.labels, "preset": args.preset,
                            "epochs": args.epochs, "seed": args.seed, "select_metric": args.select_metric,
                            "device": args.device}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set expects KEY=VALUE, got {item!r}")
        flat[key] = _parse_value(value)
    try:
        config = RunConfig.from_flat(flat)
    except (KeyError, TypeError, ValueError) as exc:
        parser.error(str(exc.args[0] if exc.args else exc))

    import datasets  # only the command line reads from disk

    from erc.table import FeatureTable

    try:
        rows = FeatureTable.from_dataset(datasets.load_from_disk(args.features))
    except (OSError, FileNotFoundError, KeyError) as exc:
        parser.error(f"--features {args.features}: {exc}")
    if args.fold not in rows.folds:
        parser.error(f"fold {args.fold} not in the dataset (folds: {rows.folds})")
    train, dev, valid = rows.split_for(args.fold, config.protocol.select_on)
    n_dev = 0 if dev is None else len(dev)
    print(f"features: {args.features}  fold {args.fold}: {len(train)} train / {n_dev} dev / {len(valid)} valid")
    print("config: " + json.dumps(config.to_flat()))
    header = "  ".join(f"{k:>{max(len(k), 6)}}" for k in _TABLE_KEYS)
    print(header)
    print("-" * len(header))
    result = fit(config, train, valid, dev=dev, on_epoch=lambda epoch, m: print(_format_row(m), flush=True))
    print("-" * len(header))
    print(f"selected epoch {result.selected_epoch} (best {config.select_metric} on {result.selected_on}; "
          f"on the held-out fold: epoch {result.oracle_epoch}); "
          f"train n={result.n_train}, valid n={result.n_valid} ({result.n_valid_cls} with a unique majority)")
    print(_format_row(result.metrics))
    if args.save:
        torch.save({"config": config.to_flat(), "state_dict": result.state_dict, "metrics": result.metrics},
                   args.save)
        print(f"saved head to {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The main job: the fusion × labels × fold ablation grid as a Ray Tune sweep (DESIGN §6)."""

from __future__ import annotations

import argparse
import itertools

FOLDS, FUSIONS, LABELS = (0, 1, 2, 3, 4), ("concat", "outer"), ("hard", "soft", "peakl")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args(argv)
    grid = list(itertools.product(FOLDS, FUSIONS, LABELS))
    print(f"plan: {len(grid)} trials (fold × fusion × labels); the sweep runner lands with issue 5")


if __name__ == "__main__":
    main()

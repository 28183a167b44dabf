"""A ratings manifest for any other corpus (DESIGN §2): long format, one row per rating.

Columns ``utterance_id, wav, text, group, rater, category, valence, arousal`` (+ optional ``split``),
as CSV or JSON lines; ``wav`` is relative to the manifest's folder. Votes are the ratings per
category (a blank category is a rating without a vote); valence/arousal the mean over the
utterance's rows (blank = none; a manifest with no valence or arousal at all has no dimensions);
folds come from ``group`` by the same contiguous rule as sessions (integer groups by value, others
by their sorted order), unless ``split`` (train / dev / test) is given. Bad rows are excluded with
reasons, as for KEMDy. The classes are the categories named, sorted, unless ``classes`` lists them
(comma-separated; ratings of other categories are then dropped).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from erc.data.kemdy import Exclusion, RatingError, wav_duration
from erc.data.registry import CorpusRead, majority, no_vote_reason
from erc.vocab import DIMENSIONS, MANIFEST, PARTITIONS

NAME = MANIFEST
ALL = "all"  # the class set of every category the manifest names
COLUMNS = ["utterance_id", "wav", "text", "group", "rater", "category", "valence", "arousal"]
SPLIT = "split"
PARTITION = {"train": "train", "dev": "dev", "development": "dev", "validation": "dev", "valid": "dev",
             "test": "test"}
assert set(PARTITION.values()) == set(PARTITIONS)


def read_rows(path: Path) -> list[dict[str, str]]:
    if path.suffix.lower() == ".jsonl":
        rows = []
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append({k: "" if v is None else str(v) for k, v in json.loads(line).items()})
                except json.JSONDecodeError as err:
                    rows.append({"_error": f"malformed row: {path.name}:{line_no}: {err.msg}"})
        return rows
    with path.open(encoding="utf-8-sig", newline="") as f:
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(f)]


def _number(cell: str, what: str) -> float | None:
    if not cell.strip():
        return None
    try:
        value = float(cell)
    except ValueError:
        raise RatingError(f"non-numeric rating: {cell!r} ({what})") from None
    if not np.isfinite(value):
        raise RatingError(f"non-numeric rating: {cell!r} ({what})")
    return value


def read(path: Path, classes: str = ALL) -> CorpusRead:
    rows = read_rows(path)
    missing = [c for c in COLUMNS if rows and "_error" not in rows[0] and c not in rows[0]]
    if not rows or missing:
        raise ValueError(f"{path}: a ratings manifest needs the columns {COLUMNS} (+ optional {SPLIT!r}); "
                         f"missing {missing or COLUMNS}")
    has_split = any(row.get(SPLIT, "").strip() for row in rows)
    by_utt: dict[str, list[tuple[int, dict[str, str]]]] = {}
    bad: list[Exclusion] = []
    for line_no, row in enumerate(rows, start=2 if path.suffix.lower() == ".csv" else 1):
        if "_error" in row:
            bad.append(Exclusion(f"{path.name}:{line_no}", -1, row["_error"]))
        elif not row.get("utterance_id", "").strip():
            bad.append(Exclusion(f"{path.name}:{line_no}", -1, f"malformed row: {path.name}:{line_no} has no utterance_id"))
        else:
            by_utt.setdefault(row["utterance_id"].strip(), []).append((line_no, row))
    named = sorted({r["category"].strip() for rs in by_utt.values() for _, r in rs if r.get("category", "").strip()})
    names = tuple(named) if classes == ALL else tuple(c.strip() for c in classes.split(",") if c.strip())
    dims = tuple(d for d in DIMENSIONS if any(r.get(d, "").strip() for rs in by_utt.values() for _, r in rs))
    groups = sorted({r["group"].strip() for rs in by_utt.values() for _, r in rs})
    numeric = all(g.lstrip("-").isdigit() for g in groups)
    group_id = {g: int(g) if numeric else i + 1 for i, g in enumerate(groups)}
    out = CorpusRead(classes=names, dimensions=dims, groups=[] if has_split else sorted(set(group_id.values())),
                     split="official" if has_split else "session")
    values: dict[str, list[float]] = {d: [] for d in dims}
    for utt, rated in by_utt.items():
        session = group_id[rated[0][1]["group"].strip()]
        try:
            record = _record(path, utt, [r for _, r in rated], session, names, dims, classes, has_split)
        except RatingError as err:
            out.records.append(Exclusion(utt, session, str(err)))
            continue
        out.records.append(record)
        for d in dims:
            values[d] += record[f"{d}_ratings"]
    out.records += bad
    if dims and all(values[d] for d in dims):
        out.scale = (min(min(values[d]) for d in dims), max(max(values[d]) for d in dims))
    return out


def _record(path: Path, utt: str, rows: list[dict[str, str]], session: int, names: tuple[str, ...],
            dims: tuple[str, ...], set_name: str, has_split: bool) -> dict:
    for column in ("wav", "text", "group", *([SPLIT] if has_split else [])):
        seen = {r.get(column, "").strip() for r in rows}
        if len(seen) > 1:
            raise RatingError(f"inconsistent rows: {utt} has {len(seen)} different {column!r} values")
    votes = [0.0] * len(names)
    ratings: dict[str, list[float]] = {d: [] for d in dims}
    for r in rows:
        category = r.get("category", "").strip()
        if category in names:
            votes[names.index(category)] += 1
        for d in dims:
            value = _number(r.get(d, ""), d)
            if value is not None:
                ratings[d].append(value)
    if sum(votes) == 0:
        raise RatingError(no_vote_reason(set_name, names))
    for d in dims:
        if not ratings[d]:
            raise RatingError(f"missing rating: {d}")
    split = ""
    if has_split:
        cell = rows[0].get(SPLIT, "").strip()
        if cell.lower() not in PARTITION:
            raise RatingError(f"unknown split: {cell!r} (expected one of {sorted(PARTITION)})")
        split = PARTITION[cell.lower()]
    wav = (path.parent / rows[0]["wav"].strip()).resolve()
    duration = wav_duration(wav)
    text = " ".join(rows[0].get("text", "").split())
    if not text:
        raise RatingError(f"empty transcript: {utt}")
    return {
        "session": session, "segment_id": utt, "wav_path": str(wav), "text": text, "text_raw": rows[0]["text"],
        "votes": votes, "majority": majority(votes), "duration": duration, "split": split,
        **{d: float(np.mean(ratings[d])) if d in dims else float("nan") for d in DIMENSIONS},
        **{f"{d}_ratings": ratings.get(d, []) for d in DIMENSIONS},
    }


def write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    """Write a manifest (CSV or JSON lines by ``path``'s suffix) from rating rows."""
    columns = [*COLUMNS, *([SPLIT] if any(SPLIT in r for r in rows) else [])]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".jsonl":
        path.write_text("".join(json.dumps({c: r.get(c, "") for c in columns}) + "\n" for r in rows), encoding="utf-8")
    else:
        with path.open("w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            w.writerows({c: r.get(c, "") for c in columns} for r in rows)
    return path


def write_fixture(root: Path, *, seed: int = 0, groups: int = 5, per_group: int = 6, raters: int = 4,
                  suffix: str = ".csv") -> Path:
    """A generated manifest with its WAVs under ``root``; returns the manifest file."""
    from erc.data.synth import sentence, write_wav

    rng = np.random.default_rng(seed)
    root = Path(root)
    categories = ("angry", "happy", "neutral", "sad")
    proto = {"angry": (1.7, 4.1), "happy": (4.3, 3.7), "neutral": (3.0, 2.4), "sad": (1.8, 1.8)}
    rows = []
    for g in range(groups):
        for k in range(per_group):
            utt = f"spk{g:02d}_{k:03d}"
            true = str(rng.choice(categories))
            v, a = np.clip(np.array(proto[true]) + rng.normal(0, 0.35, 2), 1, 5)
            wav = f"wav/{utt}.wav"
            write_wav(root / wav, rng, float(a))
            text = sentence(rng, float(v))
            for r in range(raters):
                vote = true if rng.random() < 0.7 else str(rng.choice(categories))
                rows.append({"utterance_id": utt, "wav": wav, "text": text, "group": f"spk{g:02d}",
                             "rater": f"r{r}", "category": vote,
                             "valence": f"{np.clip(np.rint(v + rng.normal(0, 0.6)), 1, 5):g}",
                             "arousal": f"{np.clip(np.rint(a + rng.normal(0, 0.6)), 1, 5):g}"})
    return write_manifest(root / f"ratings{suffix}", rows)

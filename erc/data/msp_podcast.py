"""MSP-Podcast 1.10–1.12 (``MSP-PODCAST*/``): reader and fixture writer from one layout (DESIGN §2).

* ``Audios/<FileName>`` (``MSP-PODCAST_0001_0008.wav``), ``Transcripts/<name>.txt`` (one line).
* ``Labels/`` (the folder's case varies by release):
  ``labels_consensus.csv`` — ``FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set`` (spelled
  ``labels_concensus`` before 1.10; ``.json`` variants: FileName → the same fields);
  ``labels_detailed.csv`` — ``FileName,EmoDetail``, one row per worker, the packed string
  ``WORKER0000001; Neutral; Neutral,Confused; A:1.000000; V:4.000000; D:1.000000;`` (the secondary
  field may be missing, so A/V/D are found by prefix; primary labels are words or ``Other-<text>``).
  ``labels_detailed.json`` (FileName → worker → ``EmoClass_Major``, ``EmoAct``, ``EmoVal``, ``EmoDom``) is
  read when there is no CSV.

Codes A, S, H, U, F, D, C, N, O, X (X: no agreement); dimensions on 1–7. Votes are the workers' primary
labels; valence/arousal the mean of the workers' (the consensus value where no worker rated it).
Trials use the official partition — Train / Development / Test1 (``Validation`` in older releases) —
instead of folds; other test sets are excluded with their name.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from erc.data.kemdy import Exclusion, RatingError, wav_duration
from erc.data.registry import CorpusRead, CorpusSpec, majority, no_vote_reason, tally
from erc.data.synth import sentence, to_scale, write_wav
from erc.vocab import DIMENSIONS

RELEASE = "MSP-PODCAST*"
AUDIO_DIR = "Audios"
TRANSCRIPT_DIR = "Transcripts"
LABELS_DIR = "Labels"  # matched in any case
CONSENSUS = ("labels_consensus", "labels_concensus")  # the release's two spellings
DETAILED = "labels_detailed"
CONSENSUS_COLUMNS = ["FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set"]
DETAILED_COLUMNS = ["FileName", "EmoDetail"]
FILE_NAME = "MSP-PODCAST_{podcast:04d}_{segment:04d}.wav"
SCALE = (1.0, 7.0)
PRIMARY = {"Angry": "A", "Sad": "S", "Happy": "H", "Surprise": "U", "Fear": "F", "Disgust": "D",
           "Contempt": "C", "Neutral": "N", "Other": "O"}  # a worker's primary word → its code
CATEGORIES = tuple(PRIMARY.values())  # the codes workers vote for; X (no agreement) is consensus only
NAMES = {"A": "angry", "S": "sad", "H": "happy", "U": "surprise", "F": "fear", "D": "disgust", "C": "contempt",
         "N": "neutral", "O": "other"}
CLASS_SETS = {"eight": {c: NAMES[c] for c in CATEGORIES if c != "O"}, "all": {c: NAMES[c] for c in CATEGORIES}}
PARTITION = {"Train": "train", "Development": "dev", "Validation": "dev", "Test1": "test"}
DIM_PREFIX = {"arousal": "A:", "valence": "V:", "dominance": "D:"}
DIM_JSON = {"arousal": "EmoAct", "valence": "EmoVal", "dominance": "EmoDom"}
CONSENSUS_DIM = {"valence": "EmoVal", "arousal": "EmoAct"}


def primary_code(word: str) -> str:
    """A worker's primary label as a code ("Other-<text>" is Other); a RatingError when unknown."""
    word = word.strip()
    key = "Other" if word.startswith("Other") else word
    if key not in PRIMARY:
        raise RatingError(f"unknown emotion: {word!r} (primary label)")
    return PRIMARY[key]


def parse_detail(packed: str) -> tuple[str, str, dict[str, float]]:
    """``WORKER; Primary; [Secondary;] A:a; V:v; D:d;`` → (worker, primary code, the dimensions present)."""
    parts = [p.strip() for p in packed.split(";") if p.strip()]
    if len(parts) < 2:
        raise RatingError(f"malformed worker rating: {packed!r}")
    dims = {}
    for part in parts[2:]:
        for name, prefix in DIM_PREFIX.items():
            if part.startswith(prefix):
                try:
                    dims[name] = float(part[len(prefix):])
                except ValueError:
                    raise RatingError(f"non-numeric rating: {part!r}") from None
    return parts[0], primary_code(parts[1]), dims


def format_detail(worker: str, primary: str, secondary: list[str] | None, a: float, v: float, d: float) -> str:
    fields = [worker, primary, *([",".join(secondary)] if secondary else []), f"A:{a:.6f}", f"V:{v:.6f}", f"D:{d:.6f}"]
    return "; ".join(fields) + ";"


def labels_dir(release: Path) -> Path:
    found = [p for p in release.iterdir() if p.is_dir() and p.name.lower() == LABELS_DIR.lower()]
    if not found:
        raise FileNotFoundError(f"{release}: no {LABELS_DIR}/ folder (any case)")
    return found[0]


def _find(folder: Path, stems: tuple[str, ...]) -> Path | None:
    for stem in stems:
        for suffix in (".csv", ".json"):
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
    return None


def read_consensus(folder: Path) -> dict[str, dict[str, str]]:
    path = _find(folder, CONSENSUS)
    if path is None:
        raise FileNotFoundError(f"{folder}: no {' or '.join(CONSENSUS)} .csv/.json")
    if path.suffix == ".json":
        return {name: {k: str(v) for k, v in row.items()} for name, row in json.loads(path.read_text()).items()}
    with path.open(encoding="utf-8", newline="") as f:
        return {row["FileName"].strip(): row for row in csv.DictReader(f)}


def read_details(folder: Path) -> dict[str, list[tuple[str, str, dict[str, float]] | RatingError]]:
    """Each file's worker ratings (worker, primary code, dimensions), or the error one row raised."""
    path = _find(folder, (DETAILED,))
    found: dict[str, list] = {}
    if path is None:
        return found
    if path.suffix == ".json":
        for name, workers in json.loads(path.read_text()).items():
            for worker, r in workers.items():
                try:
                    dims = {d: float(r[key]) for d, key in DIM_JSON.items() if key in r}
                    found.setdefault(name, []).append((worker, primary_code(str(r["EmoClass_Major"])), dims))
                except (RatingError, ValueError) as err:
                    found.setdefault(name, []).append(RatingError(str(err)))
        return found
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            try:
                rating = parse_detail(row["EmoDetail"])
            except RatingError as err:
                rating = err
            found.setdefault(row["FileName"].strip(), []).append(rating)
    return found


# --------------------------------------------------------------------------- reader
def read(release: Path, classes: str) -> CorpusRead:
    class_set = SPEC.class_set(classes)
    names = SPEC.classes(classes)
    folder = labels_dir(release)
    consensus, details = read_consensus(folder), read_details(folder)
    out = CorpusRead(classes=names, dimensions=DIMENSIONS, groups=[])
    for name in sorted(consensus):
        row = consensus[name]
        speaker = _speaker(row.get("SpkrID", ""))
        try:
            out.records.append(_record(release, name, row, details.get(name, []), speaker, class_set, classes, names))
        except RatingError as err:
            out.records.append(Exclusion(Path(name).stem, speaker, str(err)))
    return out


def _speaker(cell: str) -> int:
    try:
        return int(float(cell))
    except ValueError:
        return -1  # "Unknown"


def _record(release: Path, name: str, row: dict[str, str], ratings: list, speaker: int,
            class_set: dict[str, str], set_name: str, names: tuple[str, ...]) -> dict:
    split = PARTITION.get(row.get("Split_Set", "").strip())
    if split is None:
        raise RatingError(f"outside the official partition: Split_Set {row.get('Split_Set', '')!r}")
    errors = [r for r in ratings if isinstance(r, RatingError)]
    if errors:
        raise errors[0]
    if not ratings:
        raise RatingError(f"no worker ratings: {name} not in {DETAILED}")
    votes = tally([[code] for _, code, _ in ratings], class_set, names)
    if sum(votes) == 0:
        raise RatingError(no_vote_reason(set_name, names))
    dims = {d: [r[2][d] for r in ratings if d in r[2]] for d in DIMENSIONS}
    mean = {}
    for d in DIMENSIONS:
        if dims[d]:
            mean[d] = float(np.mean(dims[d]))
        else:
            try:
                mean[d] = float(row[CONSENSUS_DIM[d]])
            except (KeyError, ValueError):
                raise RatingError(f"missing rating: {d}") from None
    wav = release / AUDIO_DIR / name
    duration = wav_duration(wav)
    transcript = release / TRANSCRIPT_DIR / f"{Path(name).stem}.txt"
    if not transcript.is_file():
        raise RatingError(f"missing transcript: {transcript}")
    text_raw = transcript.read_text(encoding="utf-8", errors="replace").strip()
    text = " ".join(text_raw.split())
    if not text:
        raise RatingError(f"empty transcript: {transcript.name}")
    return {
        "session": speaker, "segment_id": Path(name).stem, "wav_path": str(wav.resolve()), "text": text,
        "text_raw": text_raw, "votes": votes, "majority": majority(votes), "total_emotion": row.get("EmoClass", ""),
        "duration": duration, "split": split, **mean, **{f"{d}_ratings": dims[d] for d in DIMENSIONS},
    }


# --------------------------------------------------------------------------- fixture writer
@dataclass
class Segment:
    """One segment as the files hold it (the writer's input)."""

    name: str
    split_set: str
    speaker: str
    workers: list[str] = field(default_factory=list)  # packed EmoDetail strings
    emo_class: str = "X"
    consensus: tuple[float, float, float] = (4.0, 4.0, 4.0)  # act, val, dom
    text: str | None = "hello there."
    wav: bool = True
    arousal: float = 3.0


def write_release(release: Path, segments: list[Segment], rng: np.random.Generator, *,
                  consensus: str = CONSENSUS[0], labels: str = LABELS_DIR) -> None:
    folder = release / labels
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{consensus}.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(CONSENSUS_COLUMNS)
        for s in segments:
            act, val, dom = s.consensus
            w.writerow([s.name, s.emo_class, f"{act:.6f}", f"{val:.6f}", f"{dom:.6f}", s.speaker,
                        "Female" if rng.random() < 0.5 else "Male", s.split_set])
    with (folder / f"{DETAILED}.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(DETAILED_COLUMNS)
        w.writerows([s.name, packed] for s in segments for packed in s.workers)
    for s in segments:
        if s.text is not None:
            path = release / TRANSCRIPT_DIR / f"{Path(s.name).stem}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(s.text + "\n", encoding="utf-8")
        if s.wav:
            write_wav(release / AUDIO_DIR / s.name, rng, s.arousal)


PROTOTYPES = {"A": (1.7, 4.1), "S": (1.8, 1.8), "H": (4.3, 3.7), "U": (3.3, 4.3), "F": (1.9, 4.0), "D": (2.0, 3.0),
              "C": (2.2, 3.0), "N": (3.0, 2.4)}  # (valence, arousal) on 1–5
PRIOR = np.array([0.1, 0.12, 0.2, 0.05, 0.04, 0.04, 0.05, 0.4])
WORD = {c: w for w, c in PRIMARY.items()}


def random_segment(rng: np.random.Generator, name: str, split_set: str, speaker: str) -> Segment:
    codes = list(PROTOTYPES)
    true = str(rng.choice(codes, p=PRIOR / PRIOR.sum()))
    v, a = np.clip(np.array(PROTOTYPES[true]) + rng.normal(0, 0.35, 2), 1, 5)
    workers, primaries = [], []
    for k in range(int(rng.integers(5, 8))):
        code = true if rng.random() < 0.6 else str(rng.choice(codes))
        word = "Other-Bored" if rng.random() < 0.05 else WORD[code]
        primaries.append("O" if word.startswith("Other") else code)
        secondary = None if rng.random() < 0.3 else [word.split("-")[0], "Confused"]
        wa, wv = (float(np.clip(np.rint(to_scale(x + rng.normal(0, 0.5), SCALE)), *SCALE)) for x in (a, v))
        workers.append(format_detail(f"WORKER{int(rng.integers(1, 10**6)):07d}", word, secondary, wa, wv, 4.0))
    counts = {c: primaries.count(c) for c in set(primaries)}
    top = [c for c, n in counts.items() if n == max(counts.values())]
    return Segment(name=name, split_set=split_set, speaker=speaker, workers=workers,
                   emo_class=top[0] if len(top) == 1 else "X",
                   consensus=(to_scale(float(a), SCALE), to_scale(float(v), SCALE), 4.0),
                   text=sentence(rng, float(v)), arousal=float(a))


def write_fixture(root: Path, *, seed: int = 0, version: str = "1.11", per_split: int = 12,
                  consensus: str = CONSENSUS[0]) -> Path:
    """A generated MSP-Podcast in its release layout under ``root``; returns the release folder."""
    rng = np.random.default_rng(seed)
    release = Path(root) / f"MSP-PODCAST-{version}"
    segments = []
    for i, split_set in enumerate(("Train", "Development", "Test1")):
        for k in range(per_split):
            name = FILE_NAME.format(podcast=i * 100 + k // 4 + 1, segment=k + 1)
            segments.append(random_segment(rng, name, split_set, speaker=str(10 * i + k % 3)))
    write_release(release, segments, rng, consensus=consensus)
    return release


SPEC = CorpusSpec(
    name="MSP-Podcast",
    release=RELEASE,
    categories=CATEGORIES,
    class_sets=CLASS_SETS,
    scale=SCALE,
    split="official",
    read=read,
)

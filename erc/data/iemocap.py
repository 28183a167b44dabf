"""IEMOCAP (``IEMOCAP_full_release/Session{1..5}/``): reader and fixture writer from one layout (DESIGN §2).

Layout, per session ``s`` and dialog ``d`` (``Ses01F_impro01``):

* ``dialog/EmoEvaluation/<d>.txt``: blocks separated by blank lines; a turn line
  ``[start - end]\\t<utt>\\t<code>\\t[V, A, D]``, then evaluator lines: ``C-E<k>:\\tCat; Cat;\\t(comment)``
  (external evaluator k's categories), ``C-F<k>`` / ``C-M<k>`` (the actors' self-evaluations),
  ``A-E<k>:\\tval v; act a; dom  d;\\t(comment)`` (1–5, double space before the dominance; it is
  missing on a few real lines), ``A-F`` / ``A-M`` (self).
* ``dialog/transcriptions/<d>.txt``: ``<utt> [start-end]: text``; it also lists turns nobody
  evaluated (ignored).
* ``sentences/wav/<d>/<utt>.wav``.

Rules: votes come from the external evaluators (``C-E``) only, 1/n to each of the n categories an
evaluator names; the default class set is the field's four classes (``neutral``, ``happy`` =
Happiness + Excited, ``sad``, ``angry``); votes for other categories (Other included) are dropped
and an utterance left with no vote is excluded with a reason naming the class set; valence/arousal
are the mean of the ``A-E`` lines (the turn line's bracket when there are none); session s is fold
s − 1 with five folds; a missing WAV or transcript line is an exclusion with its reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from erc.data.kemdy import Exclusion, RatingError, wav_duration
from erc.data.registry import CorpusRead, CorpusSpec, majority, no_vote_reason, tally
from erc.data.synth import sentence, write_wav
from erc.vocab import DIMENSIONS

RELEASE = "IEMOCAP_full_release"
SESSION_DIR = "Session{session}"
SESSION_RE = re.compile(r"^Session(?P<session>\d+)$")
EVALUATION = "dialog/EmoEvaluation/{dialog}.txt"
TRANSCRIPTION = "dialog/transcriptions/{dialog}.txt"
WAV = "sentences/wav/{dialog}/{utt}.wav"
DIALOG_NAME = "Ses{session:02d}{speaker}_{kind}{number:02d}"
UTT_NAME = "{dialog}_{speaker}{number:03d}"
# the turn line; the bracket's values, then the evaluator lines
TURN_LINE = "[{start:.4f} - {end:.4f}]\t{utt}\t{code}\t[{v:.4f}, {a:.4f}, {d:.4f}]"
TURN_RE = re.compile(r"^\[(?P<start>[\d.]+) - (?P<end>[\d.]+)\]\t(?P<utt>\S+)\t(?P<code>\w+)\t"
                     r"\[(?P<v>[\d.]+), (?P<a>[\d.]+), (?P<d>[\d.]+)\]")
CATEGORICAL_LINE = "C-{who}:\t{categories}\t({comment})"
CATEGORICAL_RE = re.compile(r"^C-(?P<who>[EFM])\d+:\t(?P<categories>[^\t]*)")
DIMENSIONAL_RE = re.compile(r"^A-(?P<who>[EFM])\d+:\t(?P<values>[^\t]*)")
DIM_FIELDS = {"valence": "val", "arousal": "act", "dominance": "dom"}  # a rating's fields, by prefix
TRANSCRIPT_LINE = "{utt} [{start:08.4f}-{end:08.4f}]: {text}"
TRANSCRIPT_RE = re.compile(r"^(?P<utt>\S+) \[[^\]]*\]:\s?(?P<text>.*)$")
EXTERNAL = "E"  # the external evaluators; F / M are the actors' self-evaluations

CODES = {"neu": "Neutral", "hap": "Happiness", "exc": "Excited", "sad": "Sadness", "ang": "Anger",
         "fru": "Frustration", "sur": "Surprise", "fea": "Fear", "dis": "Disgust", "oth": "Other", "xxx": None}
CATEGORIES = tuple(c for c in CODES.values() if c)
SPELLINGS = {"Neutral state": "Neutral"}  # the release's own spelling of Neutral
FOUR = {"Neutral": "neutral", "Happiness": "happy", "Excited": "happy", "Sadness": "sad", "Anger": "angry"}
CLASS_SETS = {"four": FOUR, "all": {c: c.lower() for c in CATEGORIES}}
_TAGS = re.compile(r"\[[A-Z_]+\]")  # transcriber tags: [LAUGHTER], [BREATHING], …


def category(word: str) -> str:
    """A C-line category in the release's words ("Other" whatever follows it)."""
    word = SPELLINGS.get(word.strip(), word.strip())
    return "Other" if word.startswith("Other") else word


def parse_categories(text: str) -> list[str]:
    return [category(w) for w in text.split(";") if w.strip()]


def parse_dimensions(text: str) -> dict[str, float]:
    """``val v; act a; dom  d;`` → the fields present, found by prefix (dominance may be missing)."""
    found = {}
    for part in text.split(";"):
        words = part.split()
        for name, prefix in DIM_FIELDS.items():
            if len(words) == 2 and words[0] == prefix:
                try:
                    found[name] = float(words[1])
                except ValueError:
                    raise RatingError(f"non-numeric rating: {part.strip()!r}") from None
    return found


def format_dimensions(v: float, a: float, d: float | None) -> str:
    return f"val {v:g}; act {a:g};" + (f" dom  {d:g};" if d is not None else "")


@dataclass
class Turn:
    """One evaluated turn as the files hold it (the writer's input; the reader's view of a block)."""

    utt: str
    start: float
    end: float
    code: str
    vad: tuple[float, float, float]
    categorical: list[tuple[str, list[str]]] = field(default_factory=list)  # (who: E1/F1/M1, categories)
    dimensional: list[tuple[str, float, float, float | None]] = field(default_factory=list)  # (who, v, a, d)
    text: str | None = "hello there."  # None: no transcript line
    wav: bool = True  # False: no WAV written
    arousal: float = 3.0  # the voice's arousal (writer only)

    def block(self) -> str:
        lines = [TURN_LINE.format(start=self.start, end=self.end, utt=self.utt, code=self.code,
                                  v=self.vad[0], a=self.vad[1], d=self.vad[2])]
        lines += [CATEGORICAL_LINE.format(who=who, categories="".join(f"{c}; " for c in cats).rstrip(" "),
                                          comment="") for who, cats in self.categorical]
        lines += [f"A-{who}:\t{format_dimensions(v, a, d)}\t()" for who, v, a, d in self.dimensional]
        return "\n".join(lines)


def dialog_paths(release: Path, session: int, dialog: str) -> tuple[Path, Path]:
    base = release / SESSION_DIR.format(session=session)
    return base / EVALUATION.format(dialog=dialog), base / TRANSCRIPTION.format(dialog=dialog)


def wav_path(release: Path, session: int, dialog: str, utt: str) -> Path:
    return release / SESSION_DIR.format(session=session) / WAV.format(dialog=dialog, utt=utt)


# --------------------------------------------------------------------------- reader
def read(release: Path, classes: str) -> CorpusRead:
    class_set = SPEC.class_set(classes)
    names = SPEC.classes(classes)
    sessions = sorted(int(m["session"]) for p in release.iterdir() if (m := SESSION_RE.match(p.name)) and p.is_dir())
    out = CorpusRead(classes=names, dimensions=DIMENSIONS, groups=sessions)
    for session in sessions:
        evaluations = (release / SESSION_DIR.format(session=session) / EVALUATION).parent
        for path in sorted(evaluations.glob("*.txt")):
            if path.name.startswith("."):
                continue  # macOS resource forks ("._Ses01F_impro01.txt") in some copies
            out.records += _read_dialog(release, session, path.stem, class_set, classes, names)
    return out


def _read_dialog(release: Path, session: int, dialog: str, class_set: dict[str, str], set_name: str,
                 names: tuple[str, ...]) -> list[dict | Exclusion]:
    evaluation, transcription = dialog_paths(release, session, dialog)
    texts: dict[str, str] | None = None
    if transcription.is_file():
        texts = {}
        for line in transcription.read_text(encoding="utf-8", errors="replace").splitlines():
            if m := TRANSCRIPT_RE.match(line.strip()):
                texts[m["utt"]] = m["text"].strip()
    records: list[dict | Exclusion] = []
    for block in re.split(r"\n\s*\n", evaluation.read_text(encoding="utf-8", errors="replace")):
        lines = [line.rstrip("\r") for line in block.strip().splitlines()]
        turn = TURN_RE.match(lines[0]) if lines else None
        if turn is None:
            continue  # the file's header line, or a blank
        utt = turn["utt"]
        try:
            records.append(_record(release, session, dialog, turn, lines[1:], texts, class_set, set_name, names))
        except RatingError as err:
            records.append(Exclusion(utt, session, str(err)))
    return records


def _record(release: Path, session: int, dialog: str, turn: re.Match[str], lines: list[str],
            texts: dict[str, str] | None, class_set: dict[str, str], set_name: str,
            names: tuple[str, ...]) -> dict:
    utt = turn["utt"]
    raters: list[list[str]] = []
    dims: dict[str, list[float]] = {d: [] for d in DIMENSIONS}
    for line in lines:
        if (m := CATEGORICAL_RE.match(line)) and m["who"] == EXTERNAL:
            raters.append(parse_categories(m["categories"]))
        elif (m := DIMENSIONAL_RE.match(line)) and m["who"] == EXTERNAL:
            values = parse_dimensions(m["values"])
            for d in DIMENSIONS:
                if d in values:
                    dims[d].append(values[d])
    votes = tally(raters, class_set, names)
    if sum(votes) == 0:
        raise RatingError(no_vote_reason(set_name, names))
    bracket = {"valence": float(turn["v"]), "arousal": float(turn["a"])}
    mean = {d: float(np.mean(dims[d])) if dims[d] else bracket[d] for d in DIMENSIONS}
    wav = wav_path(release, session, dialog, utt)
    duration = wav_duration(wav)
    if texts is None:
        raise RatingError(f"missing transcript: {dialog_paths(release, session, dialog)[1]}")
    if utt not in texts:
        raise RatingError(f"missing transcript line: {utt} in {dialog}.txt")
    text_raw = texts[utt]
    text = " ".join(_TAGS.sub(" ", text_raw).split())
    if not text:
        raise RatingError(f"empty transcript after cleaning: {utt}")
    return {
        "session": session, "segment_id": utt, "wav_path": str(wav.resolve()), "text": text,
        "text_raw": text_raw, "votes": votes, "majority": majority(votes), "total_emotion": turn["code"],
        "duration": duration, **mean, **{f"{d}_ratings": dims[d] for d in DIMENSIONS},
    }


# --------------------------------------------------------------------------- fixture writer
def write_dialog(release: Path, session: int, dialog: str, turns: list[Turn], rng: np.random.Generator) -> None:
    """One dialog's evaluation file, transcription (with one turn nobody evaluated) and WAVs."""
    evaluation, transcription = dialog_paths(release, session, dialog)
    evaluation.parent.mkdir(parents=True, exist_ok=True)
    transcription.parent.mkdir(parents=True, exist_ok=True)
    header = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"
    evaluation.write_text("\n\n".join([header, *(t.block() for t in turns)]) + "\n\n", encoding="utf-8")
    lines = [TRANSCRIPT_LINE.format(utt=t.utt, start=t.start, end=t.end, text=t.text)
             for t in turns if t.text is not None]
    lines.append(TRANSCRIPT_LINE.format(utt=f"{dialog}_MXX0", start=0.0, end=0.5, text="[LAUGHTER]"))
    transcription.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for t in turns:
        if t.wav:
            write_wav(wav_path(release, session, dialog, t.utt), rng, t.arousal, female=t.utt[-4] == "F")


# the demo's prototypes (valence, arousal on 1–5) of the release's categories
PROTOTYPES = {"Neutral": (3.0, 2.4), "Happiness": (4.3, 3.7), "Excited": (4.0, 4.2), "Sadness": (1.8, 1.8),
              "Anger": (1.7, 4.1), "Frustration": (2.1, 3.4), "Surprise": (3.3, 4.3), "Fear": (1.9, 4.0),
              "Disgust": (2.0, 3.0), "Other": (3.0, 3.0)}
PRIOR = {"Neutral": 0.3, "Happiness": 0.12, "Excited": 0.12, "Sadness": 0.14, "Anger": 0.14, "Frustration": 0.1,
         "Surprise": 0.03, "Fear": 0.02, "Disgust": 0.01, "Other": 0.02}
CODE_OF = {c: k for k, c in CODES.items() if c}
WRITTEN = {"Neutral": "Neutral state"}  # the release's spelling


def random_turn(rng: np.random.Generator, utt: str, start: float) -> Turn:
    """A turn with 3–4 external evaluators (some naming two categories), self-evaluations, dimensions."""
    cats = list(PRIOR)
    true = str(rng.choice(cats, p=np.array(list(PRIOR.values())) / sum(PRIOR.values())))
    v, a = np.clip(np.array(PROTOTYPES[true]) + rng.normal(0, 0.35, 2), 1, 5)
    external = []
    for _ in range(int(rng.integers(3, 5))):
        named = [true if rng.random() < 0.7 else str(rng.choice(cats))]
        if rng.random() < 0.2:
            named.append(str(rng.choice(cats)))
        external.append(list(dict.fromkeys(named)))
    counts = {c: sum(c in named for named in external) for c in cats}
    code = CODE_OF[true] if counts[true] == max(counts.values()) else "xxx"
    categorical = [(f"E{k + 1}", [WRITTEN.get(c, c) for c in named]) for k, named in enumerate(external)]
    categorical.append((f"{utt[-4]}1", [WRITTEN.get(c, c) for c in [str(rng.choice(cats))]]))  # self
    dimensional = [(f"E{k + 1}", *np.clip(np.rint([v + rng.normal(0, 0.6), a + rng.normal(0, 0.6), 3.0]), 1, 5))
                   for k in range(int(rng.integers(2, 4)))]
    dimensional.append((f"{utt[-4]}1", 5.0, 1.0, 3.0))  # a self-evaluation far from the external ones
    end = start + float(rng.uniform(1, 4))
    return Turn(utt=utt, start=start, end=end, code=code, vad=(float(v), float(a), 3.0), categorical=categorical,
                dimensional=[(w, float(x), float(y), float(z)) for w, x, y, z in dimensional],
                text=sentence(rng, float(v)), arousal=float(a))


def write_fixture(root: Path, *, seed: int = 0, sessions: int = 5, dialogs: int = 2, turns: int = 6) -> Path:
    """A generated IEMOCAP in its release layout under ``root``; returns the release folder."""
    rng = np.random.default_rng(seed)
    release = Path(root) / RELEASE
    for s in range(1, sessions + 1):
        for i in range(dialogs):
            dialog = DIALOG_NAME.format(session=s, speaker="FM"[i % 2], kind="impro" if i % 2 == 0 else "script",
                                        number=i // 2 + 1)
            clock, made = 0.0, []
            for k in range(turns):
                speaker = "FM"[k % 2]
                made.append(random_turn(rng, UTT_NAME.format(dialog=dialog, speaker=speaker, number=k), clock))
                clock = made[-1].end + 0.3
            write_dialog(release, s, dialog, made, rng)
    return release


SPEC = CorpusSpec(
    name="IEMOCAP",
    release=RELEASE,
    categories=CATEGORIES,
    class_sets=CLASS_SETS,
    scale=(1.0, 5.0),
    split="session",
    read=read,
)

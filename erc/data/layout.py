"""How a corpus lies on disk, defined once: the reader (:mod:`erc.data.kemdy`) reads by it and the
demo writer (:mod:`erc.data.demo`) writes by it (DESIGN §2).

A :class:`Layout` names a corpus's folder, its annotation files (one per session, or one per session
and speaker), its segment ids, where each segment's WAV and transcript lie and in which encoding,
and the annotation header: the column groups of the two header rows, then the evaluators. A layout
is data only — no code branches on a corpus's name — so another corpus in this family is one more
``Layout`` value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ANNOTATION_DIR = "annotation"
WAV_DIR = "wav"
N_EVALUATORS = 10  # raters per utterance: the last 3 × N_EVALUATORS columns of every data row
# header names the reader locates columns by (never fixed offsets: releases differ in their header rows)
NUMBER = "Numb"
SEGMENT_ID = "Segment ID"
TOTAL = "Total Evaluation"  # the consensus rating: the three columns after the segment id
RATING = ("Emotion", "Valence", "Arousal")  # the cells of a rating (the consensus and each evaluator's)
TIMES = ("start", "end")  # the cells of a timed signal (the WAV and, in KEMDy19, the bio-signals)


@dataclass(frozen=True)
class Columns:
    """A column group: its name in the first header row above its cells' names in the second."""

    name: str
    cells: tuple[str, ...] = ("",)


def evaluator(i: int) -> Columns:
    """The ``i``-th evaluator's rating columns (0-based; the header alternates female and male raters)."""
    return Columns(f"Eval{i + 1:02d}{'FM'[i % 2]}", RATING)


@dataclass(frozen=True)
class Layout:
    name: str  # the `corpus` column value
    directory: str  # folder under the data root
    annotation_glob: str
    annotation_re: re.Pattern[str]  # a file name the glob matches must match this, naming its session
    annotation_name: str  # format of a file name: {session}, and {speaker} when files are per speaker
    segment_re: re.Pattern[str]  # groups: session, dialogue (script01, impro02, …), speaker
    segment_name: str  # format of a segment id: {session}, {dialogue}, {speaker}, {number}, {user}
    wav_name: str  # format of a WAV's path under WAV_DIR: {session}, {dialogue}, {segment_id}
    transcript_encoding: str  # of the .txt beside each WAV
    columns: tuple[Columns, ...]  # the column groups before the evaluators'

    @property
    def per_speaker(self) -> bool:
        """Whether each session has one annotation file per speaker (which rates only that speaker's rows)."""
        return "speaker" in self.annotation_re.groupindex

    def annotation_path(self, root: Path, session: int, speaker: str | None = None) -> Path:
        return root / self.directory / ANNOTATION_DIR / self.annotation_name.format(session=session, speaker=speaker)

    def wav_path(self, root: Path, segment_id: str) -> Path:
        match = self.segment_re.match(segment_id)
        if match is None:
            raise ValueError(f"{segment_id!r} is not a {self.name} segment id")
        name = self.wav_name.format(session=int(match.group("session")), dialogue=match.group("dialogue"),
                                    segment_id=segment_id)
        return root / self.directory / WAV_DIR / name

    def header_rows(self) -> list[list[str]]:
        """The annotation files' two header rows: group names (blank over a group's further cells), cell names."""
        groups = [*self.columns, *(evaluator(i) for i in range(N_EVALUATORS))]
        return [[cell for g in groups for cell in (g.name, *[""] * (len(g.cells) - 1))],
                [cell for g in groups for cell in g.cells]]


_SIGNAL_COLUMNS = (Columns(NUMBER), Columns("Wav", TIMES))
_RATING_COLUMNS = (Columns(SEGMENT_ID), Columns(TOTAL, RATING))

KEMDY19 = Layout(
    name="KEMDy19",
    directory="KEMDy19",
    annotation_glob="Session*_[FM]_res.csv",
    annotation_re=re.compile(r"^Session(?P<session>\d+)_(?P<speaker>[FM])_res\.csv$"),
    annotation_name="Session{session:02d}_{speaker}_res.csv",
    segment_re=re.compile(r"^Sess(?P<session>\d+)_(?P<dialogue>[A-Za-z]+\d+)_(?P<speaker>[FM])\d+$"),
    segment_name="Sess{session:02d}_{dialogue}_{speaker}{number:03d}",
    wav_name="Session{session:02d}/Sess{session:02d}_{dialogue}/{segment_id}.wav",  # one folder per dialogue
    transcript_encoding="utf-8",
    columns=(*_SIGNAL_COLUMNS, *(Columns(signal, TIMES) for signal in ("ECG", "E4-EDA", "E4-TEMP")),
             *_RATING_COLUMNS),
)
KEMDY20 = Layout(
    name="KEMDy20",
    directory="KEMDy20_v1_1",
    annotation_glob="Sess*_eval.csv",
    annotation_re=re.compile(r"^Sess(?P<session>\d+)_eval\.csv$"),
    annotation_name="Sess{session:02d}_eval.csv",
    segment_re=re.compile(r"^Sess(?P<session>\d+)_(?P<dialogue>[A-Za-z]+\d+)_User\d+(?P<speaker>[FM])_\d+$"),
    segment_name="Sess{session:02d}_{dialogue}_User{user:03d}{speaker}_{number:03d}",
    wav_name="Session{session:02d}/{segment_id}.wav",
    transcript_encoding="cp949",
    columns=(*_SIGNAL_COLUMNS, *_RATING_COLUMNS),
)
LAYOUTS = (KEMDY19, KEMDY20)

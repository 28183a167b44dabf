"""erc.data.layout: the one layout definition the demo writer writes by and the reader reads by."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from erc.data.kemdy import annotation_files, find_segment_column, read_rows
from erc.data.layout import LAYOUTS, N_EVALUATORS, RATING, SEGMENT_ID, TOTAL


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
def test_every_name_a_layout_writes_is_one_its_reader_accepts(layout, tmp_path):
    segment = layout.segment_name.format(session=7, dialogue="script02", speaker="M", number=3, user=14)
    match = layout.segment_re.match(segment)
    assert match and (int(match["session"]), match["dialogue"], match["speaker"]) == (7, "script02", "M")
    wav = layout.wav_path(tmp_path, segment)
    assert wav.name == f"{segment}.wav" and wav.is_relative_to(tmp_path / layout.directory)
    path = layout.annotation_path(tmp_path, 7, "M" if layout.per_speaker else None)
    name = layout.annotation_re.match(path.name)
    assert name and int(name["session"]) == 7 and path.match(layout.annotation_glob)
    header, cells = layout.header_rows()
    assert len(header) == len(cells) and cells[-3 * N_EVALUATORS:] == list(RATING) * N_EVALUATORS
    seg_col = header.index(SEGMENT_ID)
    assert header[seg_col + 1] == TOTAL and cells[seg_col + 1:seg_col + 4] == list(RATING)
    # a file holding only the header rows: the reader finds it and its segment-id column
    path.parent.mkdir(parents=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, cells])
    [(found, _)] = annotation_files(tmp_path, layout)
    assert found == path and find_segment_column(read_rows(path), path) == (seg_col, len(header))


def test_the_demo_corpus_lies_where_the_layouts_say(demo_root: Path):
    for layout in LAYOUTS:
        rows = read_rows(layout.annotation_path(demo_root, 1, "F" if layout.per_speaker else None))
        assert rows[:2] == layout.header_rows()
        segment = rows[2][rows[0].index(SEGMENT_ID)]
        assert layout.wav_path(demo_root, segment).is_file()
        assert layout.wav_path(demo_root, segment).with_suffix(".txt").read_bytes().decode(layout.transcript_encoding)

"""The original code's data selection (the ``paper`` protocol's ``data_selection='paper'``, :mod:`erc.protocol`).

The original code reads the KEMDy19 annotation with pandas and drops every row with a missing value —
bio-signal columns included, which this reader never uses — and leaves a few scripts out. Finding
those rows means reading the raw annotation files again, cell by cell, as that code saw them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from erc.data import EXCLUDED_COLUMNS
from erc.data.kemdy import annotation_files, find_segment_column, read_rows
from erc.data.layout import KEMDY19

# Scripts the original code leaves out (by segment-id prefix, in whichever corpus holds them).
PAPER_SCRIPTS = ("Sess01_impro03", "Sess01_impro04", "Sess03_script04", "Sess06_script02", "Sess07_script02")
PAPER_REASON = "paper protocol"


def paper_exclusions(corpus: Any) -> pd.DataFrame:
    """Usable utterances the original code leaves out, with reasons ``paper protocol: …``.

    KEMDy19 rows with any empty cell (bio-signal columns included) and the scripts in
    :data:`PAPER_SCRIPTS`. Columns as ``Corpus.excluded``; rows the reader already excluded are not
    repeated.
    """
    utterances = corpus.utterances
    kept = dict(zip(utterances["segment_id"], zip(utterances["corpus"], utterances["session"], strict=True),
                    strict=True))
    reasons: dict[str, str] = {}
    if (corpus.root / KEMDY19.directory).is_dir():
        for path, name in annotation_files(corpus.root, KEMDY19):
            rows = read_rows(path)
            seg_col, width = find_segment_column(rows, path)
            for line_no, row in enumerate(rows, start=1):
                cells = [c.strip() for c in row]
                match = KEMDY19.segment_re.match(cells[seg_col]) if len(cells) == width else None
                if match is None or match.group("speaker") != name.group("speaker"):
                    continue  # as the reader: each file rates its own speaker's rows
                segment_id = cells[seg_col]
                if segment_id in kept and not all(cells) and segment_id not in reasons:
                    empty = [i + 1 for i, c in enumerate(cells) if not c]
                    reasons[segment_id] = (f"{PAPER_REASON}: {KEMDY19.name} row with empty cell(s) in column(s) "
                                           f"{empty} ({path.name}:{line_no})")
    for segment_id in kept:
        script = next((s for s in PAPER_SCRIPTS if segment_id.startswith(s + "_")), None)
        if script is not None and segment_id not in reasons:
            reasons[segment_id] = f"{PAPER_REASON}: script {script} is left out"
    return pd.DataFrame([{"corpus": kept[s][0], "session": kept[s][1], "segment_id": s, "reason": r}
                         for s, r in sorted(reasons.items())], columns=EXCLUDED_COLUMNS)

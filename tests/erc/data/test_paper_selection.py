"""erc.data.paper_selection: the rows the original code leaves out, read from the raw annotation files."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

from erc.data import load_corpus
from erc.data.paper_selection import paper_exclusions


def _copy_with_empty_ecg(root: Path, out: Path) -> str:
    shutil.copytree(root, out)
    path = out / "KEMDy19" / "annotation" / "Session02_F_res.csv"
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    row = next(r for r in rows[2:] if "_F" in r[9])
    row[3] = ""  # the ECG start cell
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return row[9]


def test_paper_data_selection_is_recorded_with_reasons(demo_root, tmp_path):
    segment = _copy_with_empty_ecg(demo_root, tmp_path / "data")
    corpus = load_corpus(tmp_path / "data", verbose=False)
    assert segment in set(corpus.utterances.segment_id)  # the reader itself keeps it (bio cells unused)
    excluded = paper_exclusions(corpus)
    assert list(excluded.columns) == list(corpus.excluded.columns)
    assert excluded.reason.str.startswith("paper protocol: ").all()
    by_id = dict(zip(excluded.segment_id, excluded.reason, strict=True))
    assert "empty cell" in by_id[segment]
    # of the five scripts only Sess06_script02 exists in the small demo (sessions 1–5 and 1–6)
    ids = corpus.utterances.segment_id
    script_rows = set(ids[ids.str.startswith("Sess06_script02_")])
    assert script_rows and set(by_id) - {segment} == script_rows
    assert all(by_id[s] == "paper protocol: script Sess06_script02 is left out" for s in script_rows)
    from erc.protocol import paper_exclusions as old_home  # still importable from where it was

    assert old_home is paper_exclusions

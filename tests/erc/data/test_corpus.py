import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from erc.data import load_corpus
from erc.labels import hard


@pytest.fixture()
def corpus_copy(demo_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(demo_root, tmp_path / "data"))


def edit_row(csv_path: Path, segment_id: str, edit) -> None:
    rows = list(csv.reader(csv_path.open(encoding="utf-8", newline="")))
    for row in rows:
        if segment_id in row:
            edit(row)
    with csv_path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)


def test_both_layouts_load(demo_root):
    corpus = load_corpus(demo_root)
    u = corpus.utterances
    assert set(u.corpus) == {"KEMDy19", "KEMDy20"}
    assert len(u) == 5 * 2 * 4 + 6 * 2 * 4 and corpus.excluded.empty
    for column in ["corpus", "session", "segment_id", "wav_path", "text", "text_raw", "votes", "valence",
                   "arousal", "majority", "fold"]:
        assert column in u
    votes = np.stack(u.votes)
    assert votes.shape[1] == 7 and (votes.sum(1) == 10).all()
    np.testing.assert_array_equal(u.majority, hard(votes))
    assert u.segment_id.is_unique
    assert all(Path(p).is_file() for p in u.wav_path)


def test_kemdy19_keeps_only_the_files_speaker(corpus_copy):
    # Each file lists the whole session but rates only its own speaker: make the other speaker's rows
    # unusable in every file; the reader must not see them (no exclusion, no duplicate, same votes).
    intact = load_corpus(corpus_copy, verbose=False).utterances.set_index("segment_id")
    for path in (corpus_copy / "KEMDy19" / "annotation").glob("*.csv"):
        other = "M" if path.stem.split("_")[1] == "F" else "F"
        rows = list(csv.reader(path.open(encoding="utf-8", newline="")))
        for row in rows:
            if re.search(rf"_{other}\d+$", row[9]):
                row[-30::3] = ["bored"] * 10
        with path.open("w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows(rows)
    corpus = load_corpus(corpus_copy)
    assert corpus.excluded.empty
    k19 = corpus.utterances[corpus.utterances.corpus == "KEMDy19"].set_index("segment_id")
    assert k19.index.is_unique and len(k19) == 5 * 2 * 4
    assert set(k19.index.str.extract(r"_([FM])\d+$")[0]) == {"F", "M"}
    assert all(k19.votes[seg] == intact.votes[seg] for seg in k19.index)


def test_cp949_transcripts_decoded(demo_root):
    u = load_corpus(demo_root).utterances
    row = u[u.corpus == "KEMDy20"].iloc[0]
    raw = Path(row.wav_path).with_suffix(".txt").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert row.text_raw == raw.decode("cp949")
    assert any("\uac00" <= ch <= "\ud7a3" for ch in row.text)  # Hangul survived


def test_folds_by_session(demo_root):
    u = load_corpus(demo_root).utterances
    for name, n_sessions in [("KEMDy19", 5), ("KEMDy20", 6)]:
        part = u[u.corpus == name]
        assert part.groupby("session").fold.nunique().max() == 1  # never a session split across folds
        per_fold = part.groupby("fold").session.nunique().tolist()
        assert per_fold == ([1] * 5 if n_sessions == 5 else [2, 1, 1, 1, 1])


def annotation_rows(root: Path) -> dict[str, list[str]]:
    """Every data row of the raw annotation files by segment id (KEMDy19 lists a row in two files)."""
    rows = {}
    for path in root.glob("*/annotation/*.csv"):
        for row in csv.reader(path.open(encoding="utf-8", newline="")):
            ids = [cell for cell in row if cell.startswith("Sess")]
            if ids:
                rows[ids[0]] = row
    return rows


def test_disqust_spelling_read_as_disgust(demo_root):
    # The raters' cells spelled "disqust" must count as disgust votes, not exclude the utterance.
    misspelled = {seg: row for seg, row in annotation_rows(demo_root).items() if "disqust" in row[-30::3]}
    assert len(misspelled) >= 10
    u = load_corpus(demo_root).utterances.set_index("segment_id")
    assert set(misspelled) <= set(u.index)
    for seg, row in misspelled.items():
        raters = row[-30::3]
        assert u.votes[seg][6] == raters.count("disqust") + raters.count("disgust") > 0, seg


def test_every_bad_input_is_excluded_with_a_reason(corpus_copy):
    good = load_corpus(corpus_copy).utterances
    k20 = good[good.corpus == "KEMDy20"].segment_id.tolist()
    ann = corpus_copy / "KEMDy20_v1_1" / "annotation"

    def wav(seg):
        return Path(good.set_index("segment_id").wav_path[seg])

    def csv_of(seg):
        return ann / f"{seg[:6]}_eval.csv"

    bad = dict(zip(["missing_wav", "corrupt_wav", "empty_txt", "bad_encoding", "unknown_emotion",
                    "missing_valence", "wrong_cells", "missing_rater"], k20[::5]))
    wav(bad["missing_wav"]).unlink()
    wav(bad["corrupt_wav"]).write_bytes(b"RIFF\x00\x00junk" * 10)
    wav(bad["empty_txt"]).with_suffix(".txt").write_bytes(b"  \n")
    wav(bad["bad_encoding"]).with_suffix(".txt").write_bytes(b"\xff\xfe\xfa\x80")
    edit_row(csv_of(bad["unknown_emotion"]), bad["unknown_emotion"], lambda r: r.__setitem__(-9, "bored"))
    edit_row(csv_of(bad["missing_valence"]), bad["missing_valence"], lambda r: r.__setitem__(5, ""))
    edit_row(csv_of(bad["wrong_cells"]), bad["wrong_cells"], lambda r: r.pop())
    edit_row(csv_of(bad["missing_rater"]), bad["missing_rater"], lambda r: r.__setitem__(-1, ""))

    corpus = load_corpus(corpus_copy)
    reasons = corpus.excluded.set_index("segment_id").reason
    expected = {"missing_wav": "missing wav", "corrupt_wav": "unreadable wav", "empty_txt": "empty transcript",
                "bad_encoding": "not valid cp949", "unknown_emotion": "unknown emotion: 'bored'",
                "missing_valence": "Total Evaluation valence", "wrong_cells": "malformed row",
                "missing_rater": "evaluator 10 arousal"}
    for case, fragment in expected.items():
        assert fragment in reasons[bad[case]], (case, reasons.get(bad[case]))
    assert len(corpus.utterances) == len(good) - len(bad)  # the rest load, nothing else lost
    assert set(corpus.utterances.segment_id) | set(bad.values()) == set(good.segment_id)


def test_exclusions_summarised_on_screen_and_saved(corpus_copy, caplog, tmp_path):
    u = load_corpus(corpus_copy, verbose=False).utterances
    Path(u.wav_path.iloc[0]).unlink()
    corpus = load_corpus(corpus_copy)
    assert "1 excluded" in caplog.text and "missing wav" in caplog.text
    saved = corpus.save_exclusions(tmp_path / "excluded.csv").read_text()
    assert u.segment_id.iloc[0] in saved


def test_header_rows_are_found_by_name_not_offset(corpus_copy):
    # A release with an extra title row above the headers, or without the sub-header row, loses
    # nothing: the same segments with the same ratings.
    def loaded():
        u = load_corpus(corpus_copy).utterances
        return dict(zip(u.segment_id, u.votes.map(tuple)))

    before = loaded()
    for path in (corpus_copy / "KEMDy20_v1_1" / "annotation").glob("*.csv"):
        path.write_text("KEMDy20 annotation export\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    assert loaded() == before
    for path in (corpus_copy / "KEMDy19" / "annotation").glob("*.csv"):
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        assert "Emotion" in lines[1]  # the sub-header row
        path.write_text(lines[0] + "".join(lines[2:]), encoding="utf-8")
    assert loaded() == before


def test_wrong_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_corpus(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="KEMDy20_v1_1/annotation/Sess01_eval.csv"):
        load_corpus(tmp_path)


def test_corpus_without_annotations_is_a_clear_error(tmp_path):
    (tmp_path / "KEMDy19" / "wav").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no annotation files"):
        load_corpus(tmp_path)


def test_single_corpus_root(corpus_copy):
    shutil.rmtree(corpus_copy / "KEMDy19")
    u = load_corpus(corpus_copy).utterances
    assert set(u.corpus) == {"KEMDy20"} and len(u) == 6 * 2 * 4


def test_folds_do_not_depend_on_which_utterances_survive(corpus_copy):
    # A session whose every utterance is excluded (a bad download, a corrupt folder) keeps its place:
    # the other sessions keep the folds of the intact corpus (DESIGN §2).
    intact = load_corpus(corpus_copy, verbose=False)
    before = intact.utterances.set_index("segment_id").fold
    for pattern in ["KEMDy19/wav/Session03/*/*.wav", "KEMDy20_v1_1/wav/Session04/*.wav"]:
        for i, wav in enumerate(sorted(corpus_copy.glob(pattern))):
            wav.unlink() if i % 2 else wav.write_bytes(b"not a wav")  # missing and corrupt alike

    damaged = load_corpus(corpus_copy, verbose=False)
    u = damaged.utterances
    assert not ((u.corpus == "KEMDy19") & (u.session == 3)).any()
    assert not ((u.corpus == "KEMDy20") & (u.session == 4)).any()
    assert len(u) == len(before) - 2 * 2 * 4
    assert (u.fold.to_numpy() == before[u.segment_id].to_numpy()).all()
    # The session → fold map still lists the emptied sessions, with what became of their utterances.
    sessions = damaged.sessions.set_index(["corpus", "session"])
    pd.testing.assert_series_equal(sessions.fold, intact.sessions.set_index(["corpus", "session"]).fold)
    for emptied in [("KEMDy19", 3), ("KEMDy20", 4)]:
        assert sessions.loc[emptied].tolist() == [2, 0, 8]  # fold, n_utterances, n_excluded
    assert "sessions with no usable utterance: KEMDy19 3 (fold 2), KEMDy20 4 (fold 2)" in damaged.summary()


def test_sessions_table_is_the_session_fold_map(demo_root):
    corpus = load_corpus(demo_root, verbose=False)
    s = corpus.sessions
    assert list(s.columns) == ["corpus", "session", "fold", "n_utterances", "n_excluded"]
    assert s[s.corpus == "KEMDy19"].session.tolist() == [1, 2, 3, 4, 5]
    assert s[s.corpus == "KEMDy20"].fold.tolist() == [0, 0, 1, 2, 3, 4]
    assert (s.n_utterances == 8).all() and (s.n_excluded == 0).all()
    folds = dict(zip(zip(s.corpus, s.session), s.fold))
    u = corpus.utterances
    assert [folds[k] for k in zip(u.corpus, u.session)] == u.fold.tolist()


def test_annotation_file_naming_no_session_is_a_clear_error(corpus_copy):
    ann = corpus_copy / "KEMDy19" / "annotation"
    (ann / "Session01_F_res.csv").rename(ann / "Session_old_F_res.csv")
    with pytest.raises(ValueError, match=r"name no session .*Session_old_F_res\.csv"):
        load_corpus(corpus_copy)


def test_corpora_with_the_same_classes_in_another_order_are_mapped_by_name(demo_root, monkeypatch):
    """KEMDy20 read with its classes reversed: load_corpus reorders its votes and majority to KEMDy19's
    class order, so every utterance keeps its votes under the same class names."""
    import dataclasses

    import numpy as np

    from erc.data import kemdy20, load_corpus

    plain = load_corpus(demo_root, verbose=False)
    read = kemdy20.SPEC.read

    def reversed_read(folder, classes):
        out = read(folder, classes)
        records = [r if not isinstance(r, dict) else
                   {**r, "votes": list(r["votes"])[::-1],
                    "majority": len(out.classes) - 1 - r["majority"] if r["majority"] >= 0 else r["majority"]}
                   for r in out.records]
        return dataclasses.replace(out, classes=out.classes[::-1], records=records)

    monkeypatch.setattr(kemdy20, "SPEC", dataclasses.replace(kemdy20.SPEC, read=reversed_read))
    mapped = load_corpus(demo_root, verbose=False)
    assert mapped.classes == plain.classes
    a, b = plain.utterances.set_index("segment_id"), mapped.utterances.set_index("segment_id")
    assert np.array_equal(np.stack(a["votes"]), np.stack(b.loc[a.index, "votes"]))
    assert (a["majority"] == b.loc[a.index, "majority"]).all()

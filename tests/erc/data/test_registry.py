"""erc.data.registry and load_corpus over several corpora: detection by release folder, choice, clear errors."""

import pytest

from erc.data import load_corpus
from erc.data.registry import registry
from erc.vocab import CORPUS_NAMES, SPLIT_KINDS


def test_every_corpus_module_declares_a_spec():
    specs = registry()
    assert len(specs) == len(CORPUS_NAMES) and all(s.split in SPLIT_KINDS for s in specs)
    for s in specs:
        assert s.classes() and set(s.class_set(None)) <= set(s.categories)


def test_different_class_sets_are_an_error_naming_both(tmp_path):
    from erc.data import crema_d, iemocap

    iemocap.write_fixture(tmp_path, sessions=5, dialogs=1, turns=2)
    crema_d.write_fixture(tmp_path, actors=5, sentences=1)
    with pytest.raises(ValueError, match="IEMOCAP and CREMA-D cannot be read together"):
        load_corpus(tmp_path, verbose=False)
    assert set(load_corpus(tmp_path, verbose=False, corpora=["crema_d"]).utterances.corpus) == {"CREMA-D"}
    with pytest.raises(ValueError, match="unknown corpora"):
        load_corpus(tmp_path, corpora=["nope"])


def test_no_corpus_names_the_release_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="IEMOCAP_full_release/"):
        load_corpus(tmp_path)

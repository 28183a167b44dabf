"""sweeps/fault_injection.py: the ERC_FAIL_ONCE switch (its retry behaviour: tests/sweeps/test_trainable.py)."""

from __future__ import annotations

import pytest

from erc import contract as C
from sweeps.fault_injection import fail_once_spec, inject_failure


def test_the_switch_reads_a_pattern_and_an_optional_epoch():
    assert fail_once_spec(None) is None and fail_once_spec("") is None
    assert fail_once_spec("fold0-outer") == ("fold0-outer", None)
    assert fail_once_spec("fold0@3") == ("fold0", 3)
    assert fail_once_spec("a@b@2") == ("a@b", 2)
    for bad in ("fold0@0", "fold0@two", "@2"):
        with pytest.raises(ValueError, match="@<epoch>"):
            fail_once_spec(bad)


def test_other_trials_epochs_and_search_trials_are_left_alone(tmp_path):
    config = {C.FOLD: 0, C.FUSION: "outer", C.LABELS: "soft", C.SEED: 0}
    settings = {"fail_once": "fold1-outer@2", "fail_once_dir": str(tmp_path)}
    # none of these is the moment to fail, so nothing asks Ray for the trial (there is no trial here)
    inject_failure(settings, config, 2, reported=True)  # another fold
    inject_failure(settings, {**config, C.FOLD: 1}, 1, reported=True)  # another epoch
    inject_failure(settings, {**config, C.FOLD: 1}, 2, reported=False)  # before the report
    inject_failure(settings, {k: v for k, v in config.items() if k != C.FOLD}, 2, reported=True)  # a search trial
    inject_failure({"fail_once": None}, config, 1, reported=False)  # the switch is off
    assert not list(tmp_path.iterdir())

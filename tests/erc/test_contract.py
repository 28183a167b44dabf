"""The naming contract's filter builders: every value quoted so that MLflow parses it as one literal."""

from __future__ import annotations

import pytest

from erc import contract as C


def test_quote_picks_the_quote_the_value_does_not_hold():
    assert C.quote("demo") == "'demo'"
    assert C.quote("bob's sweep") == '"bob\'s sweep"'
    assert C.quote('say "hi"') == "'say \"hi\"'"
    assert C.quote(3) == "'3'"
    with pytest.raises(ValueError, match="both quote characters"):
        C.quote("""it's "x" """)


def test_tag_filter_backquotes_keys_and_joins_clauses():
    text = C.tag_filter({C.ROLE: C.TRIAL_ROLE, C.TRIAL_ID: "a'b"}, parent="p1", status="RUNNING",
                        extra=["params.lr = '0.1'"])
    assert text == ("tags.`role` = 'trial' and tags.`ray.trial_id` = \"a'b\" and tags.`mlflow.parentRunId` = 'p1'"
                    " and attributes.status = 'RUNNING' and params.lr = '0.1'")
    assert C.tag_filter() == ""


def test_names_the_reader_and_writer_share():
    assert C.arm_name("outer", "peakl") == "outer-peakl"
    assert C.error_artifact(2) == "errors/attempt_2.txt" and C.HEAD_CHECKPOINT == "checkpoint/head.pt"
    assert set(C.VALUE_PREFIXES) == {"selected", "oracle", "best"} and C.DEFAULT_VALUES in C.VALUE_PREFIXES
    assert C.SPLIT_FILE == "split.json" and {C.DEV_PREFIX, C.ORACLE_PREFIX, C.ROBUST_PREFIX} <= set(C.LOGGED_PREFIXES)

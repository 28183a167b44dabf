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


# Every tag key a sweep writes (sweeps/tracking.py, sweeps/naming.py) or analysis writes (its analysis run).
WRITTEN_TAGS = (C.SWEEP, C.ROLE, C.STAGE, C.FOLD, C.FUSION, C.LABELS, C.ARM, C.SEED, C.CORPUS, C.AUDIO_ENCODER,
                C.TEXT_ENCODER, C.FEATURES, C.GIT_COMMIT, C.COMMAND, C.MODE, C.PROTOCOL, C.GPUS_PER_TRIAL,
                C.TRIAL_ID, C.NODE_ID, C.NODE_IP, C.node_attempt_tag(2), C.ATTEMPTS, C.FAILED_ATTEMPTS,
                C.LAST_ERROR, C.RESUMED, C.ORPHANED, C.ANALYSIS_SCOPE)


@pytest.fixture
def client(tmp_path, monkeypatch):
    """A real MLflow store (a ``file:`` store: MLflow 3 opens one only with MLFLOW_ALLOW_FILE_STORE)."""
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())


def test_every_written_tag_round_trips_through_tag_filter(client):
    # Each key (some hold dots, which MLflow's grammar only takes backquoted) with a value MLflow must read
    # as one literal (quotes, spaces, a number): the filter finds exactly the run that carries it.
    exp = client.create_experiment("contract")
    values = ["bob's sweep", 'say "hi"', "a b = c", "0"]
    runs = {}
    for i, key in enumerate(WRITTEN_TAGS):
        value = values[i % len(values)]
        runs[key] = client.create_run(exp, tags={key: value, "other": value}).info.run_id
        client.set_terminated(runs[key], "FINISHED" if i % 2 else "FAILED")
    for i, key in enumerate(WRITTEN_TAGS):
        value = values[i % len(values)]
        found = C.search_all(client, exp, C.tag_filter({key: value}))
        assert [r.info.run_id for r in found] == [runs[key]], key
        status = "FINISHED" if i % 2 else "FAILED"
        assert [r.info.run_id for r in C.search_all(client, [exp], C.tag_filter({key: value}, status=status))] \
            == [runs[key]]
        assert C.search_all(client, exp, C.tag_filter({key: value}, status="RUNNING")) == []


def test_search_all_reads_a_parents_children_and_skips_deleted_runs(client):
    exp = client.create_experiment("tree")
    other = client.create_experiment("elsewhere")
    parent = client.create_run(exp, tags={C.ROLE: C.PARENT_ROLE}).info.run_id
    children = [client.create_run(exp, tags={C.PARENT_RUN_ID: parent}, start_time=1000 + i).info.run_id
                for i in range(3)]
    client.create_run(other, tags={C.PARENT_RUN_ID: parent})  # same tag, another experiment
    client.delete_run(children[1])
    found = C.search_all(client, exp, C.tag_filter(parent=parent), order_by=["attributes.start_time DESC"])
    assert [r.info.run_id for r in found] == [children[2], children[0]]
    assert len(C.search_all(client, [exp, other], C.tag_filter(parent=parent))) == 3
    assert {r.info.run_id for r in C.search_all(client, exp)} == {parent, children[0], children[2]}


def test_arm_and_artifact_names_are_built_from_their_parts():
    assert C.arm_name("outer", "peakl") == "outer-peakl"
    assert C.error_artifact(2).startswith(C.ERRORS_DIR + "/") and C.error_artifact(2) != C.error_artifact(3)
    assert C.HEAD_CHECKPOINT.startswith(C.CHECKPOINT_DIR + "/")
    assert C.DEFAULT_VALUES in C.VALUE_PREFIXES
    # A plain "<metric>" is read only when it carries none of the prefixes the writer logs under.
    assert set(C.LOGGED_PREFIXES) <= set(C.KNOWN_PREFIXES) and set(C.VALUE_PREFIXES.values()) <= set(C.KNOWN_PREFIXES)
    # honest selection (DESIGN §14): oracle values read like selected and best; the split beside them
    assert set(C.VALUE_PREFIXES) == {"selected", "oracle", "best"}
    assert C.SPLIT_FILE == "split.json" and {C.DEV_PREFIX, C.ORACLE_PREFIX, C.ROBUST_PREFIX} <= set(C.LOGGED_PREFIXES)

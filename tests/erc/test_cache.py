"""erc.cache.build_once: one builder per result, atomic publish, nothing half-written left behind."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from erc.atomic import build_lock
from erc.cache import build_once, lock_file, marked

LOAD = marked("meta.json")


def _builder(calls: list, fail: bool = False):
    def build(tmp: Path, need) -> None:
        calls.append(tmp)
        time.sleep(0.2)  # long enough for a concurrent caller to arrive
        (tmp / "data.txt").write_text("x")
        if fail:
            raise RuntimeError("disk full")
        (tmp / "meta.json").write_text("{}")
    return build


def once(final: Path, build, **kw):
    return build_once(final, build, load=LOAD, what="a test cache", **kw)


def test_concurrent_callers_build_once_and_share_the_result(tmp_path):
    calls: list = []
    out: list = []
    threads = [threading.Thread(target=lambda: out.append(once(tmp_path / "k1", _builder(calls))))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and out == [tmp_path / "k1"] * 3
    assert (tmp_path / "k1" / "data.txt").read_text() == "x"
    assert once(tmp_path / "k1", _builder(calls)) == tmp_path / "k1" and len(calls) == 1


def test_a_failed_build_publishes_nothing_and_the_next_one_cleans_up(tmp_path):
    with pytest.raises(RuntimeError, match="disk full"):
        once(tmp_path / "k2", _builder([], fail=True))
    assert not (tmp_path / "k2").exists() and not list(tmp_path.glob(".tmp-k2-*"))
    (tmp_path / ".tmp-k2-999-stale").mkdir()  # what a killed process leaves
    (tmp_path / "k2").mkdir()  # an incomplete directory (no marker) is never taken for a cache
    calls: list = []
    assert once(tmp_path / "k2", _builder(calls)) == tmp_path / "k2"
    assert len(calls) == 1 and not list(tmp_path.glob(".tmp-k2-*"))
    with pytest.raises(RuntimeError, match="does not load"):
        once(tmp_path / "k3", lambda tmp, need: None)
    assert not (tmp_path / "k3").exists()


def test_leftovers_of_other_results_go_unless_their_build_is_alive(tmp_path):
    (tmp_path / ".tmp-dead-key-12-abc_1").mkdir()  # a name with dashes, its builder killed
    (tmp_path / ".tmp-alive-12-abc").mkdir()
    with build_lock(lock_file(tmp_path / "alive")):  # being built right now
        once(tmp_path / "k4", _builder([]))
    assert sorted(p.name for p in tmp_path.glob(".tmp-*")) == [".tmp-alive-12-abc"]


def test_a_directory_that_is_not_ours_is_refused_before_any_build(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    calls: list = []
    with pytest.raises(FileExistsError, match="is not a test cache"):
        once(tmp_path / "mine", _builder(calls), replaceable=lambda path: not any(path.iterdir()))
    assert calls == [] and (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_the_build_states_its_need_and_a_full_disk_names_it(tmp_path):
    from erc.atomic import DiskFullError

    def build(tmp: Path, need) -> None:
        need.require(2048)
        raise OSError(28, "No space left on device")

    with pytest.raises(DiskFullError, match=r"cannot write a test cache at .*k5: No space left on device; "
                                            r"it needs about 2.0 KB"):
        once(tmp_path / "k5", build)
    assert not list(tmp_path.glob(".tmp-*")) and not (tmp_path / "k5").exists()

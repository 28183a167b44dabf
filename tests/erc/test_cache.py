"""erc.cache.build_once: one builder per key, atomic publish, nothing half-written left behind."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from erc.cache import build_once


def _builder(calls: list, fail: bool = False):
    def build(tmp: Path) -> None:
        calls.append(tmp)
        time.sleep(0.2)  # long enough for a concurrent caller to arrive
        (tmp / "data.txt").write_text("x")
        if fail:
            raise RuntimeError("disk full")
        (tmp / "meta.json").write_text("{}")
    return build


def test_concurrent_callers_build_once_and_share_the_result(tmp_path):
    calls: list = []
    out: list = []
    threads = [threading.Thread(target=lambda: out.append(build_once(tmp_path, "k1", _builder(calls))))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and out == [tmp_path / "k1"] * 3
    assert (tmp_path / "k1" / "data.txt").read_text() == "x"
    assert build_once(tmp_path, "k1", _builder(calls)) == tmp_path / "k1" and len(calls) == 1


def test_a_failed_build_publishes_nothing_and_the_next_one_cleans_up(tmp_path):
    with pytest.raises(RuntimeError, match="disk full"):
        build_once(tmp_path, "k2", _builder([], fail=True))
    assert not (tmp_path / "k2").exists() and not list(tmp_path.glob(".tmp-k2-*"))
    (tmp_path / ".tmp-k2-999-stale").mkdir()  # what a killed process leaves
    (tmp_path / "k2").mkdir()  # an incomplete directory (no marker) is never taken for a cache
    calls: list = []
    assert build_once(tmp_path, "k2", _builder(calls)) == tmp_path / "k2"
    assert len(calls) == 1 and not list(tmp_path.glob(".tmp-k2-*"))
    with pytest.raises(RuntimeError, match="wrote no meta.json"):
        build_once(tmp_path, "k3", lambda tmp: None)

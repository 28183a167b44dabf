"""Build-once directories: a content key, a lock, an atomic publish (the guarantees of every cache).

``build_once(cache_dir, key, build)`` returns ``cache_dir/key``. When it is not complete, one process
(holding ``cache_dir/.key.lock``) calls ``build(tmp)`` on a fresh temporary directory and publishes it
with one ``rename``; a concurrent caller of the same key waits for the lock and then reuses the result.
A killed build leaves only a ``.tmp-<key>-*`` directory, which is never taken for a cache and which
the next build of that key removes. A directory counts as complete when its ``marker`` file exists;
``build`` writes that file last.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from erc.atomic import build_lock


def build_once(cache_dir: str | Path, key: str, build: Callable[[Path], None], *, marker: str = "meta.json") -> Path:
    """``cache_dir/key``, built by ``build(tmp)`` unless a complete one exists (see the module doc)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / key
    if (final / marker).is_file():
        return final
    with build_lock(cache_dir / f".{key}.lock"):
        if (final / marker).is_file():  # built by the process we waited for
            return final
        # We hold the key's lock, so nothing of this key belongs to a live build.
        for leftover in cache_dir.glob(f".tmp-{key}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        if final.exists():
            shutil.rmtree(final)
        tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".tmp-{key}-{os.getpid()}-"))
        tmp.chmod(0o755)  # mkdtemp makes it private; a cache on shared storage is read by other users
        try:
            build(tmp)
            if not (tmp / marker).is_file():
                raise RuntimeError(f"cache build for {key} wrote no {marker}")
            os.rename(tmp, final)  # atomic publish: before this line no complete cache exists
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final

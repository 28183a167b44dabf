"""Build once: the one way every shared cache is made (demo corpus, demo encoders, feature cache, input cache).

``build_once(final, build, load=…, what=…)`` returns ``load(final)`` when ``final`` already holds a
usable result. Otherwise one process — the holder of the lock ``.<name>.lock`` beside ``final`` —
calls ``build(tmp, need)`` on a fresh temporary sibling ``.tmp-<name>-<pid>-*`` and publishes it as
``final`` with one ``rename``; a concurrent caller waits for the lock and then reuses the result.
So a reader never sees a half-written directory, and a killed build leaves only a ``.tmp-*``
directory, which no load takes for a result and which the next build beside it removes.

``final`` is named by its content (a feature cache's fingerprint) or by its caller (the demo corpus's
directory, whose marker file records the settings it was built with); either way ``load`` decides
whether what is there is current. A full disk anywhere in the build is a :class:`erc.atomic.DiskFullError`
naming ``final`` and the estimate the build gave ``need`` (``need.require(bytes)`` also refuses a
build that cannot fit before it starts).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from erc.atomic import Need, build_lock, disk_full_errors, is_locked

T = TypeVar("T")
TMP_PREFIX = ".tmp-"


def lock_file(final: Path) -> Path:
    """The lock one build of ``final`` holds: a hidden file beside it (never deleted; deleting races)."""
    return final.parent / f".{final.name}.lock"


def build_once(final: str | Path, build: Callable[[Path, Need], None], *, load: Callable[[Path], T | None],
               what: str, replaceable: Callable[[Path], bool] | None = None) -> T:
    """``load(final)``, building ``final`` first (once, under its lock) unless it loads (see the module doc).

    ``build(tmp, need)`` writes the whole result into ``tmp``. ``load(path)`` returns the result a
    directory holds, or None when it holds none that is current and complete. An existing ``final``
    that does not load is replaced; ``replaceable(final)`` may refuse that (a directory the user
    named that is not ours), which raises FileExistsError before anything is built.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with disk_full_errors(final, what) as need:
        if (found := load(final)) is not None:
            return found
        with build_lock(lock_file(final)):
            if (found := load(final)) is not None:  # built by the process we waited for
                return found
            _remove_leftovers(final)
            if final.exists():
                if replaceable is not None and not replaceable(final):
                    raise FileExistsError(f"{final} exists and is not {what}; choose an empty directory")
                shutil.rmtree(final)  # before the build, not after: its space is needed
            tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f"{TMP_PREFIX}{final.name}-{os.getpid()}-"))
            tmp.chmod(0o755)  # mkdtemp makes it private; a cache on shared storage is read by other users
            try:
                build(tmp, need)
                os.rename(tmp, final)  # atomic publish: before this line no complete result exists
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            if (found := load(final)) is None:
                shutil.rmtree(final, ignore_errors=True)
                raise RuntimeError(f"{what} built at {final} does not load (its build wrote an incomplete "
                                   "directory); nothing was kept")
            return found


def _remove_leftovers(final: Path) -> None:
    """Remove killed builds' temporary directories beside ``final``.

    We hold ``final``'s lock, so no temporary directory of ``final`` belongs to a live build. One of
    another name is a leftover when nobody holds that name's lock (a killed process releases its locks).
    """
    for leftover in final.parent.glob(f"{TMP_PREFIX}*"):
        # .tmp-<name>-<pid>-<mkdtemp suffix>: neither the pid nor the suffix holds a "-"
        name = leftover.name[len(TMP_PREFIX):].rsplit("-", 2)[0]
        if not leftover.is_dir() or (name != final.name and is_locked(lock_file(final.parent / name))):
            continue
        shutil.rmtree(leftover, ignore_errors=True)


def marked(marker: str) -> Callable[[Path], Path | None]:
    """A ``load`` for results whose ``build`` writes ``marker`` last: the directory, once the marker is there."""
    return lambda path: path if (path / marker).is_file() else None

"""The primitives of a shared first-run build: a lock, a clear error when the disk fills, atomic files.

The demo corpus, the demo encoders, the feature cache and the input cache are built once under
``$ERC_CACHE`` and shared by every process that starts at the same time (two sweeps started in two
terminals). :func:`erc.cache.build_once` is the one build pattern on top of these:

1. ``build_lock(path)``: an exclusive ``flock`` on a lock file beside the output. The kernel drops it
   when its holder dies, so a killed build never blocks the next one. Whoever gets the lock second
   checks again for a finished build and reuses it instead of building its own.
2. The build goes to a temporary sibling and is published by one ``rename``: a reader never sees a
   half-written cache, and a failed build leaves nothing that looks complete.
3. ``disk_full_errors(path, what)``: a full disk (or quota, or file-size limit) mid-build becomes a
   :class:`DiskFullError` naming the path and the space the build needs, instead of whatever the
   writing library raises (``OSError``, ``SafetensorError``, …). ``Need.require`` (``require_space``)
   says the same before any work starts when the estimate already does not fit.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from erc.vocab import CACHE_ENV

# ENOSPC: disk full; EDQUOT: quota; EFBIG: a file-size limit (ulimit -f / RLIMIT_FSIZE).
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# Libraries that wrap the OS error keep only its text (safetensors: "I/O error: No space left on device
# (os error 28)"), or report a short write without it (numpy's tofile/np.save: "4581106 requested and
# 19936 written").
_FULL_TEXT = re.compile(r"No space left on device|Disk quota exceeded|File too large|os error (28|122|27)\b"
                        r"|\d+ requested and \d+ written")


class DiskFullError(OSError):
    """No room to write a cache: says where, how much it needs and how much is free (errno ENOSPC)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return self.strerror


@contextlib.contextmanager
def build_lock(lock_file: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (created if missing; never deleted, deleting races)."""
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_locked(lock_file: str | Path) -> bool:
    """Whether a live process holds ``lock_file`` (:func:`build_lock`) right now; never waits."""
    with open(lock_file, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def free_bytes(path: str | Path) -> int:
    """Free space on the filesystem that holds ``path`` (or its nearest existing ancestor)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _message(path: Path, what: str, needed: int | None, cause: str) -> str:
    need = f"it needs about {human(needed)}" if needed else "it needs more room"
    return (f"cannot write {what} at {path}: {cause}; {need} and {human(free_bytes(path))} is free there. "
            f"Free some space, or put the cache on a disk with room (--cache-dir or {CACHE_ENV}). Nothing "
            f"half-written was kept: the next run builds it again.")


def require_space(path: str | Path, needed: int, what: str) -> None:
    """Refuse to start a build whose estimated size does not fit in the free space."""
    path = Path(path)
    if free_bytes(path) < needed:
        raise DiskFullError(_message(path, what, needed, "not enough free space"))


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or an error it was raised from) is a full disk, quota or file-size limit."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _FULL_ERRNOS:
            return True
        if _FULL_TEXT.search(str(err)):
            return True
        err = err.__cause__ or err.__context__
    return False


@dataclass
class Need:
    """What a build writes, where, and the size estimate it fills in once it knows it (for the error message)."""

    path: Path
    what: str
    bytes: int | None = None

    def require(self, needed: int) -> None:
        """Record the estimate and refuse to go on when it does not fit (:func:`require_space`)."""
        self.bytes = needed
        require_space(self.path, needed, self.what)


@contextlib.contextmanager
def disk_full_errors(path: str | Path, what: str, needed: int | None = None) -> Iterator[Need]:
    """Turn a full disk inside the block into :class:`DiskFullError` naming ``path`` and the need."""
    need = Need(Path(path), what, needed)
    try:
        yield need
    except DiskFullError:
        raise
    except Exception as err:
        if not is_disk_full(err):
            raise
        cause = err.strerror if isinstance(err, OSError) and err.strerror else str(err).strip().splitlines()[-1]
        if "File too large" in cause or "os error 27" in cause:
            cause = "File too large (a file-size limit of this process, see ulimit -f)"
        elif re.search(r"\d+ requested and \d+ written", cause):
            cause = f"the disk took only part of a write ({cause})"
        raise DiskFullError(_message(Path(path), what, need.bytes, cause)) from err


def write_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` by a rename: a concurrent reader sees the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

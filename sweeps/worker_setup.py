"""Runs in every Ray worker a sweep starts (``runtime_env={"worker_process_setup_hook": …}``).

Kept import-light: every worker process imports it before its first task.
"""

from __future__ import annotations

import sys

SETUP_HOOK = "sweeps.worker_setup.quiet_sigterm_exit"


def _is_sigterm_exit(exc: BaseException | None) -> bool:
    # Ray's worker SIGTERM handler raises SystemExit carrying this message (ray._raylet).
    return isinstance(exc, SystemExit) and "SIGTERM" in str(getattr(exc, "ray_terminate_msg", ""))


def quiet_sigterm_exit() -> None:
    """Silence the traceback of a worker that Ray stops with SIGTERM inside a finaliser.

    When a trial ends, Tune frees its placement group and the raylet stops the actor's process with
    SIGTERM (then SIGKILL). Ray's handler raises ``SystemExit(1)`` in the main thread; if that lands
    while a weakref callback or ``__del__`` runs, Python cannot propagate it and prints "Exception
    ignored in … SystemExit: 1" with a traceback, which Ray forwards to the sweep's terminal after a
    successful run. The worker is being stopped on purpose, so that print is noise; any other
    unraisable exception is still reported as before.
    """
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if not _is_sigterm_exit(unraisable.exc_value):
            previous(unraisable)

    sys.unraisablehook = hook

"""What an entry script does around its body: exit codes that tell the truth.

Import-light (the entry scripts import it before torch, ray or mlflow load).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn

from erc.atomic import DiskFullError

INTERRUPTED = "interrupted — rerun the same command to resume it (finished trials are kept, not rerun)."


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can act on from their message alone: printed as one line, no traceback."""
    # sweeps.cluster imports ray; asked for only once a body has failed (and has imported it by then)
    from erc.data import CorpusError
    from sweeps.cluster import ClusterResourceError, RayAddressError

    return DiskFullError, CorpusError, ClusterResourceError, RayAddressError


def run_cli(main: Callable[..., int], *args: Any) -> int:
    """Run an entry script's body with exit codes that tell the truth.

    Ctrl-C anywhere (importing the libraries, building caches, the second Ctrl-C inside Tune, the
    report) exits 130 with the way to resume; the errors of :func:`user_errors` exit 1 with their message.
    """
    try:
        return main(*args)
    except KeyboardInterrupt:
        print(f"\n{INTERRUPTED}", file=sys.stderr)
        return 130
    except Exception as err:
        if isinstance(err, user_errors()):
            print(f"error: {err}", file=sys.stderr)
            return 1
        raise


def exit_now(code: int) -> NoReturn:
    """End an entry script with ``code`` as a normal exit would, less the interpreter's teardown.

    First what a normal exit does that has effects: wait for non-daemon threads, run the atexit
    handlers (Ray's shutdown, MLflow's and logging's flushes, temporary directories removed), flush
    stdout and stderr. Then ``os._exit``: with torch, Ray and MLflow loaded, tearing the modules down
    takes about 2 s after a sweep and changes nothing outside the process.
    """
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or a closed pipe: nothing left to write to
            pass
    os._exit(code)

"""Fault injection for tests: make chosen grid trials fail their first attempt (``ERC_FAIL_ONCE``).

The switch lives in the environment, not on the command line: users never see it. ``pattern`` fails
a trial whose run name contains it during epoch 1, before that epoch is reported (the retry starts
afresh); ``pattern@k`` fails it right after epoch k has been reported (and checkpointed), so the retry
resumes at k + 1. Importing this module imports no ray: the settings check the switch's syntax.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from erc import contract as C
from sweeps.naming import TrialLabels

FAIL_ONCE_ENV = "ERC_FAIL_ONCE"


class InjectedFailure(RuntimeError):
    """Raised by the fault-injection switch (``ERC_FAIL_ONCE``) so tests can exercise retries."""


def fail_once_spec(value: str | None) -> tuple[str, int | None] | None:
    """``pattern`` or ``pattern@epoch`` → (pattern, epoch or None); None when the switch is off."""
    if not value:
        return None
    pattern, sep, epoch = value.rpartition("@")
    if not sep:
        return value, None
    if not epoch.isdigit() or int(epoch) < 1 or not pattern:
        raise ValueError(f"{value!r}: expected <run-name pattern> or <run-name pattern>@<epoch>, epoch >= 1")
    return pattern, int(epoch)


def inject_failure(settings: Mapping[str, Any], config: Mapping[str, Any], epoch: int, reported: bool) -> None:
    """Fail the first attempt of grid trials whose run name contains the ``ERC_FAIL_ONCE`` pattern.

    Called by a trial before (``reported=False``) and after each epoch's report. The "already failed"
    marker is a file per trial id in a directory the driver chose (``settings['fail_once_dir']``, on one
    machine or a shared filesystem: the switch is for tests).
    """
    spec = fail_once_spec(settings.get("fail_once"))
    if spec is None or C.FOLD not in config:
        return
    pattern, at = spec
    if (epoch, reported) != ((1, False) if at is None else (at, True)):
        return
    name = TrialLabels(with_seed=True).name(config)
    if pattern not in name:
        return
    from ray import tune  # only inside a trial, where Ray is running anyway

    marker = Path(settings["fail_once_dir"]) / tune.get_context().get_trial_id()
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("1")
        raise InjectedFailure(f"injected failure ({FAIL_ONCE_ENV}={settings['fail_once']!r}) in {name} "
                              f"after epoch {epoch}")

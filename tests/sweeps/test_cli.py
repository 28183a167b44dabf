"""sweeps/cli.py: an entry script's exit codes."""

from __future__ import annotations

import pytest

from erc.atomic import DiskFullError
from sweeps.cli import INTERRUPTED, run_cli
from sweeps.cluster import ClusterResourceError, RayAddressError


def _raise(error: BaseException) -> int:
    raise error


def test_ctrl_c_exits_130_saying_how_to_resume(capsys):
    assert run_cli(_raise, KeyboardInterrupt()) == 130
    assert INTERRUPTED in capsys.readouterr().err


@pytest.mark.parametrize("error", [DiskFullError("disk full at /x"), ClusterResourceError("no node can"),
                                   RayAddressError("nothing at 1.2.3.4")])
def test_errors_a_user_can_act_on_exit_1_with_their_message_alone(error, capsys):
    assert run_cli(_raise, error) == 1
    assert capsys.readouterr().err == f"error: {error}\n"


def test_other_errors_keep_their_traceback_and_the_body_its_exit_code():
    with pytest.raises(ZeroDivisionError):
        run_cli(_raise, ZeroDivisionError())
    assert run_cli(lambda a, b: a + b, 2, 3) == 5

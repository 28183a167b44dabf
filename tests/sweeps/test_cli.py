"""sweeps/cli.py: an entry script's exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from erc.atomic import DiskFullError
from erc.data import CorpusError, CorpusNotFoundError
from sweeps.cli import INTERRUPTED, run_cli
from sweeps.cluster import ClusterResourceError, RayAddressError


def _raise(error: BaseException) -> int:
    raise error


def test_ctrl_c_exits_130_saying_how_to_resume(capsys):
    assert run_cli(_raise, KeyboardInterrupt()) == 130
    assert INTERRUPTED in capsys.readouterr().err


@pytest.mark.parametrize("error", [DiskFullError("disk full at /x"), ClusterResourceError("no node can"),
                                   RayAddressError("nothing at 1.2.3.4"), CorpusNotFoundError("no corpus under /d"),
                                   CorpusError("KEMDy19 and CREMA-D cannot be read together")])
def test_errors_a_user_can_act_on_exit_1_with_their_message_alone(error, capsys):
    assert run_cli(_raise, error) == 1
    assert capsys.readouterr().err == f"error: {error}\n"


def test_other_errors_keep_their_traceback_and_the_body_its_exit_code():
    with pytest.raises(ZeroDivisionError):
        run_cli(_raise, ZeroDivisionError())
    assert run_cli(lambda a, b: a + b, 2, 3) == 5


EXIT_NOW = """
import atexit, sys, tempfile, threading, time
from pathlib import Path
from sweeps.cli import exit_now

out = Path(sys.argv[1])
scratch = tempfile.TemporaryDirectory()  # removed by its finaliser, an atexit handler
(out / "scratch").write_text(scratch.name)
atexit.register(lambda: (out / "atexit").write_text("ran"))
threading.Thread(target=lambda: (time.sleep(1), (out / "thread").write_text("done"))).start()
print("buffered, not flushed", end="")
sys.stderr.write("to stderr")
exit_now(3)
"""


def test_exit_now_does_what_a_normal_exit_does_then_skips_the_teardown(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", EXIT_NOW, str(tmp_path)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 3
    assert proc.stdout == "buffered, not flushed" and proc.stderr == "to stderr"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "thread").read_text() == "done"  # a non-daemon thread finished first
    assert not Path((tmp_path / "scratch").read_text()).exists()


@pytest.mark.slow
def test_a_data_root_without_a_corpus_is_one_line_not_a_traceback(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "data").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env.update(ERC_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(repo))
    proc = subprocess.run([sys.executable, str(repo / "sweeps" / "ablation.py"), "--data", str(tmp_path / "data"),
                           "--smoke-test", "--quiet"], env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 1
    assert f"error: no corpus under {tmp_path / 'data'}" in proc.stderr and "Traceback" not in proc.stderr

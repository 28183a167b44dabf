"""Starting Ray for a sweep, and checking that the cluster can run its trials at all.

Every entry point and benchmark starts Ray through :func:`init_ray`, so they all behave alike:
- no ``--address``: a private single-machine Ray for this process (``address="local"``), never a
  cluster someone else started on this host — a bare ``ray.init()`` joins the cluster named in
  Ray's current-cluster file, and hangs for good when that cluster has died;
- ``--address auto`` or ``host:port``: the address is resolved as Ray does, then reached with a
  plain TCP connect first, so a dead cluster is an error naming the address within seconds.

:func:`check_trial_resources` runs before any trial: a request no node can meet (``--gpus-per-trial
2`` on a machine without GPUs) would otherwise leave every trial PENDING forever.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray

from sweeps.settings import AUTO, SweepSettings
from sweeps.worker_setup import SETUP_HOOK

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0  # TCP connect to the cluster's GCS
INIT_TIMEOUT_S = 120.0  # ray.init against a cluster: registering the driver, worst case


class RayAddressError(ConnectionError):
    """``--address`` names no live Ray cluster."""


class ClusterResourceError(RuntimeError):
    """No node of the cluster (nor any the autoscaler can add) can run one trial."""


def init_ray(settings: SweepSettings, *, num_gpus: int | None = None) -> None:
    """Start (or join, with ``settings.address``) Ray the way every sweep does; no-op if running.

    ``num_gpus``: the GPUs a private Ray advertises (None: those it detects); logical GPUs on a CPU
    machine let a benchmark schedule fractional-GPU requests exactly as on a GPU node.
    """
    if num_gpus is not None and settings.address:
        raise ValueError("num_gpus applies to a private Ray only, not to a cluster joined with --address")
    _wait_for_early_start()
    if ray.is_initialized():
        return
    common = {"log_to_driver": settings.verbose > 0,
              "runtime_env": {"worker_process_setup_hook": SETUP_HOOK}}
    if settings.address:
        address = resolve_address(settings.address)
        with _time_limit(INIT_TIMEOUT_S, f"Ray did not accept this driver at {address} (--address "
                                         f"{settings.address}) within {INIT_TIMEOUT_S:.0f} s"):
            try:
                ray.init(address=address, **common)
            except ConnectionError as err:  # e.g. the port answers but it is no (or another) Ray
                raise RayAddressError(f"could not join the Ray cluster at {address} (--address "
                                      f"{settings.address}): {err}") from None
    else:
        ray.init(address="local", include_dashboard=False, configure_logging=False, num_gpus=num_gpus,
                 _system_config=private_system_config(), **common)


def private_system_config() -> dict[str, Any]:
    """The raylet settings of a sweep's private Ray (a new dict each time: ``ray.init`` adds to it).

    No workers prestarted for the driver: the raylet starts one idle worker per CPU when the driver
    registers, for tasks of the driver's runtime env, but a sweep's workers carry the setup hook's
    runtime env (and Tune's trials are placement-group actors), so no trial, extraction task or
    actor ever ran on one. They were idle processes to the end: ~1.4 s CPU each to boot here, and
    memory.
    """
    return {"prestart_worker_first_driver": False}


# A private Ray started in the background by start_ray_early: "ready" is set once it is up (or failed),
# "error" is what it raised, "release" lets the starting thread end once Ray is shut down. "stopping":
# the thread of stop_early_ray, waited for before Ray starts again.
_early: dict[str, Any] = {}


def start_ray_early(settings: SweepSettings) -> None:
    """Start this sweep's private Ray in a background thread; :func:`init_ray` later waits for it.

    ``ray.init`` of a private Ray is ~4 s of waiting for its GCS and raylet to come up (0.3 s of this
    process's CPU), which the driver spends importing torch and MLflow and reading the corpus instead.
    Only a private Ray: joining ``--address`` stays in the calling thread, under its time limit.

    The thread outlives the start: Ray's processes die with the thread that started them (they are
    bound to it with ``PR_SET_PDEATHSIG``, which follows the creating thread, not the process), so it
    waits, a daemon, until :func:`stop_early_ray` or the end of the process. An exit before anyone
    waited for Ray (an error, Ctrl-C) first lets the start finish, so that Ray's own exit handler shuts
    down a whole cluster. Ray sets its SIGTERM handler only from the main thread; the same one is set here.
    """
    _wait_for_stop()
    if settings.address or ray.is_initialized() or "ready" in _early:
        return
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))  # what ray.init sets
    ready, release = threading.Event(), threading.Event()

    def start() -> None:
        try:
            with _quiet_thread_notice():
                init_ray(settings)
        except BaseException as err:  # noqa: BLE001 - re-raised by init_ray in the thread that waits for it
            _early["error"] = err
        finally:
            ready.set()
        release.wait()  # keep Ray's processes alive (see above)

    _early.update(ready=ready, release=release)
    atexit.register(ready.wait)  # runs before Ray's own shutdown handler (registered when ray loaded)
    threading.Thread(target=start, name="ray-init", daemon=True).start()


def stop_early_ray() -> None:
    """Shut down the Ray that :func:`start_ray_early` started, in a background thread, once the sweep
    needs it no more: the report that follows reads MLflow only, and Ray's shutdown is ~1.4 s of waiting
    for its processes to exit. Not a daemon: the process's exit waits for it. A no-op for any other Ray."""
    if "ready" not in _early:
        return
    _wait_for_early_start()
    release = _early["release"]

    def stop() -> None:
        ray.shutdown()
        release.set()

    thread = threading.Thread(target=stop, name="ray-shutdown", daemon=False)
    _early.clear()
    _early["stopping"] = thread
    thread.start()


def _wait_for_stop() -> None:
    stopping = _early.pop("stopping", None)
    if stopping is not None:
        stopping.join()


def _wait_for_early_start() -> None:
    _wait_for_stop()
    ready = _early.get("ready")
    if ready is None or threading.current_thread().name == "ray-init":
        return
    ready.wait()
    if (error := _early.get("error")) is not None:
        _early.clear()  # raised once: a later init_ray in this process tries afresh
        raise error


@contextlib.contextmanager
def _quiet_thread_notice() -> Iterator[None]:
    """Drop Ray's warning that a non-main thread sets no SIGTERM handler (start_ray_early sets it)."""
    worker_log = logging.getLogger("ray._private.worker")

    def notice(record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()

    worker_log.addFilter(notice)
    try:
        yield
    finally:
        worker_log.removeFilter(notice)


def start_ray(settings: SweepSettings) -> None:
    """``init_ray``, then refuse a per-trial request the cluster can never meet (before any trial)."""
    init_ray(settings)
    # 'auto' asks for no more GPU than a node has: the probe sizes it later, 0 without GPUs
    gpus = 0.0 if settings.gpus_per_trial == AUTO else settings.gpus_per_trial
    waiting = check_trial_resources(settings.cpus_per_trial, gpus)
    if waiting:
        print(waiting)


def resolve_address(address: str) -> str:
    """``auto`` / ``host:port`` → the ``host:port`` of a cluster that accepts connections.

    ``auto`` is resolved as Ray does it (``RAY_ADDRESS``, else the current-cluster file written by
    the last ``ray start`` on this machine, else a running GCS). Client addresses (``ray://``) are
    passed through: Ray's client has its own connect timeout.
    """
    if "://" in address:
        return address
    try:
        from ray._private.services import canonicalize_bootstrap_address_or_die
    except ImportError:  # moved in a newer Ray: let ray.init resolve it, still under INIT_TIMEOUT_S
        return address
    try:
        resolved = canonicalize_bootstrap_address_or_die(address)
    except (ConnectionError, ValueError) as err:
        raise RayAddressError(f"--address {address}: {err}") from None
    where = resolved if resolved == address else f"{resolved} (--address {address}{_auto_source()})"
    host, _, port = resolved.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except (OSError, ValueError) as err:
        raise RayAddressError(
            f"no Ray cluster answers at {where}: {err}. Start one there (ray start --head, or ray up "
            "cluster.yaml), pass the address of a running cluster, or leave out --address to run on "
            "this machine.") from None
    return resolved


def _auto_source() -> str:
    if os.environ.get("RAY_ADDRESS"):
        return ", from RAY_ADDRESS"
    try:
        from ray._common.utils import get_ray_address_file

        path = get_ray_address_file(None)
    except ImportError:
        return ""
    if Path(path).is_file():
        return f", from {path}, written by the last `ray start` on this machine"
    return ""


@contextlib.contextmanager
def _time_limit(seconds: float, message: str) -> Iterator[None]:
    """Raise ``RayAddressError(message)`` if the block runs longer than ``seconds`` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise RayAddressError(message)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _amount(value: float) -> str:
    return f"{value:g}"


def _fits(resources: dict[str, float], cpus: float, gpus: float) -> bool:
    return resources.get("CPU", 0) >= cpus and resources.get("GPU", 0) >= gpus


def _describe_nodes(nodes: list[dict]) -> str:
    def one(node: dict) -> str:
        res = node["Resources"]
        return f"{_amount(res.get('CPU', 0))} CPU, {_amount(res.get('GPU', 0))} GPU"

    if len(nodes) == 1:
        return f"the cluster is one node with {one(nodes[0])}"
    shown = "; ".join(f"{n.get('NodeManagerAddress', '?')}: {one(n)}" for n in nodes[:6])
    more = f"; … {len(nodes) - 6} more" if len(nodes) > 6 else ""
    return f"the cluster's {len(nodes)} nodes have {shown}{more}"


def autoscaler_node_types() -> dict[str, dict[str, float] | None] | None:
    """The node types an autoscaler can add, by name, with their resources (None where the config
    leaves them to the cloud provider to fill in from the instance type); None when the cluster
    cannot grow.

    A cluster started by ``ray up`` leaves its config in ``~/ray_bootstrap_config.yaml`` on the head
    node (Tune checks the same file); autoscaler v2 (e.g. KubeRay) reports its node groups to the
    GCS. A local or ``ray start`` cluster has neither (its monitor runs a read-only autoscaler).
    """
    config = Path("~/ray_bootstrap_config.yaml").expanduser()
    if config.is_file():
        import yaml

        try:
            types = (yaml.safe_load(config.read_text()) or {}).get("available_node_types")
        except (OSError, yaml.YAMLError):
            types = None
        if not isinstance(types, dict):
            return {"(node types not readable from the config)": None}
        return {name: (spec or {}).get("resources") or None for name, spec in types.items()
                if (spec or {}).get("max_workers", 1) != 0}
    try:
        reported = ray._private.state.state.get_cluster_config()
    except Exception as err:  # noqa: BLE001 - an internal API: if it moved, treat the cluster as fixed-size
        log.debug("autoscaler config not readable: %s", err)
        return None
    if reported is None or not reported.node_group_configs:
        return None
    return {g.name: dict(g.resources) or None for g in reported.node_group_configs if g.max_count != 0}


def addable_node_types(types: dict[str, dict[str, float] | None] | None, cpus: float, gpus: float) -> list[str]:
    """Of ``types`` (:func:`autoscaler_node_types`), the names of those whose node could hold ``cpus`` and
    ``gpus``; a type whose resources come from its instance type counts (it may). [] for None."""
    return sorted(name for name, res in (types or {}).items() if res is None or _fits(res, cpus, gpus))


def trial_slots(cpus: float, gpus: float) -> int | None:
    """How many trials of ``cpus`` and ``gpus`` the cluster's alive nodes hold at once; None when that
    has no fixed bound (an autoscaler can add nodes, or a trial asks for nothing)."""
    if (cpus <= 0 and gpus <= 0) or autoscaler_node_types() is not None:
        return None
    asked = [(name, amount) for name, amount in (("CPU", cpus), ("GPU", gpus)) if amount > 0]
    return sum(min(math.floor(node["Resources"].get(name, 0) / amount + 1e-9) for name, amount in asked)
               for node in ray.nodes() if node.get("Alive"))


def check_trial_resources(cpus: float, gpus: float) -> str | None:
    """Fail before any trial starts when no node can ever hold one trial's ``cpus`` and ``gpus``.

    Returns a note to print when no node fits yet but the autoscaler can add one that does.
    """
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if any(_fits(n["Resources"], cpus, gpus) for n in nodes):
        return None
    asked = (f"each trial asks for {_amount(cpus)} CPU and {_amount(gpus)} GPU on one node "
             f"(--cpus-per-trial {_amount(cpus)} --gpus-per-trial {_amount(gpus)})")
    have = _describe_nodes(nodes)
    types = autoscaler_node_types()
    if types is not None:
        can = addable_node_types(types, cpus, gpus)
        if can:
            return f"{asked}, but {have}: waiting for the autoscaler to add a node that has it ({', '.join(can)})."
        raise ClusterResourceError(f"{asked}, but {have}, and no node type the autoscaler can add has that "
                                   f"much ({', '.join(sorted(types)) or 'none'}).")
    raise ClusterResourceError(f"{asked}, but {have}. Ask for less per trial, or run on a cluster that has "
                               "such nodes (--address).")

"""The Dask cluster the flows' tasks may run on (CHARFLOW_DASK_ADDRESS), checked before any work: no Prefect
here, so the command checks it before Prefect loads."""

from __future__ import annotations

import sys

from artifacts.backends import CATALOG_URL, STORE_URL, urls
from artifacts.settings import environment, variable
from tasks.errors import CharflowError

DASK_ADDRESS = variable("dask_address")
CONNECT_TIMEOUT_S = 5


class ComputeError(CharflowError):
    """The Dask cluster cannot be used as configured."""


def dask_address() -> str | None:
    return environment().dask_address


_answered: set[str] = set()  # scheduler addresses that answered with workers, once a process is enough


def check(address: str | None = None) -> None:
    """Refuse a cluster that cannot work before any task: no shared backends, a malformed or silent address."""
    address = address or dask_address()
    if address is None:
        return
    if not address.startswith(("tcp://", "tls://", "ucx://", "inproc://")):
        raise ComputeError(f"{DASK_ADDRESS}={address!r} is not a scheduler address like tcp://HOST:8786; fix it")
    store, catalog = urls()
    if not (store and catalog):
        raise ComputeError(
            f"{DASK_ADDRESS} is set but {STORE_URL if not store else CATALOG_URL} is not: Dask workers, each with "
            f"its own CHARFLOW_HOME, see one another's artifacts only through the shared object store and "
            f"catalog; set {STORE_URL} and {CATALOG_URL} here and on every worker, or unset {DASK_ADDRESS}"
        )
    if address in _answered:
        return
    from distributed import Client

    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ComputeError(
            f"cannot reach the Dask scheduler at {DASK_ADDRESS}={address} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no answer'}); start it (dask scheduler) or unset "
            f"{DASK_ADDRESS} to run the tasks here"
        ) from None
    try:
        if not client.scheduler_info().get("workers"):
            raise ComputeError(
                f"the Dask scheduler at {address} has no workers; start some (dask worker {address}) or unset "
                f"{DASK_ADDRESS}"
            )
        _answered.add(address)
    finally:
        client.close()


def check_worker() -> None:
    """On a Dask worker: the shared backends must be configured there too, or its artifacts would stay on it."""
    if "distributed" not in sys.modules:  # not a Dask worker (importing it to ask costs 0.4 s a command)
        return
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    store, catalog = urls()
    if not (store and catalog):
        raise ComputeError(
            f"the Dask worker {worker.address} has no {STORE_URL if not store else CATALOG_URL}: start every "
            f"worker with {STORE_URL} and {CATALOG_URL} set to the same shared store and catalog"
        )

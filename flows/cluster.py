"""The Dask cluster the flows' tasks may run on (CHARFLOW_DASK_ADDRESS), checked before any work: no Prefect
here, so the command checks it before Prefect loads."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from artifacts.backends import CATALOG_URL, STORE_URL, urls
from artifacts.settings import environment, variable
from tasks.errors import CharflowError

if TYPE_CHECKING:
    from distributed.security import Security

DASK_ADDRESS = variable("dask_address")
# Mutual TLS: the cluster's authority, and this client's certificate and key (scripts/make_certs.sh makes them).
TLS_SETTINGS = {"dask_tls_ca": "CA", "dask_tls_cert": "certificate", "dask_tls_key": "key"}
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
    security(address)  # certificates as the address asks, each file readable
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
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False, security=security(address))
    except (OSError, TimeoutError) as exc:
        if address.startswith("tls://") and _refused_tls(exc):
            cert, ca = variable("dask_tls_cert"), variable("dask_tls_ca")
            raise ComputeError(
                f"the Dask scheduler at {DASK_ADDRESS}={address} and this client did not accept each other's "
                f"certificates ({_reason(exc)}); set {cert} and {variable('dask_tls_key')} to a certificate and key "
                f"signed by the cluster's CA, and {ca} to that CA's certificate (scripts/make_certs.sh)"
            ) from None
        if isinstance(exc.__cause__, ConnectionResetError):  # a TLS scheduler hangs up on a plain client
            raise ComputeError(
                f"the Dask scheduler at {DASK_ADDRESS}={address} closed the connection ({_reason(exc)}); a "
                f"scheduler started with --tls-* takes only tls://: set {DASK_ADDRESS}=tls://HOST:PORT and "
                f"{', '.join(variable(name) for name in TLS_SETTINGS)}"
            ) from None
        raise ComputeError(
            f"cannot reach the Dask scheduler at {DASK_ADDRESS}={address} ({_reason(exc)}); start it (dask "
            f"scheduler) or unset {DASK_ADDRESS} to run the tasks here"
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


def security(address: str | None = None) -> Security | None:
    """The client's side of mutual TLS for a tls:// address (None for another): the CHARFLOW_DASK_TLS_* files,
    encryption required. Refused by name: a missing setting or unreadable file, and certificates for tcp://."""
    address = address or dask_address()
    settings = environment()
    given = {name: getattr(settings, name) for name in TLS_SETTINGS}
    if address is None or not address.startswith("tls://"):
        if address is not None and any(given.values()):
            names = ", ".join(variable(name) for name, path in given.items() if path)
            raise ComputeError(
                f"{names} set but {DASK_ADDRESS}={address} is not tls://: the certificates would not be used; use "
                f"the scheduler's tls:// address, or unset {names}"
            )
        return None
    for name, what in TLS_SETTINGS.items():
        path: Path | None = given[name]
        if path is None:
            raise ComputeError(
                f"{DASK_ADDRESS}={address} is tls:// but {variable(name)} is not set: a scheduler with mutual TLS "
                f"refuses a client without its {what}; set {variable(name)} (scripts/make_certs.sh makes the files)"
            )
        try:
            path.open("rb").close()
        except OSError as exc:
            raise ComputeError(
                f"{variable(name)}={path} cannot be read ({exc.strerror}); fix {variable(name)}"
            ) from None
    from distributed.security import Security

    return Security(
        tls_ca_file=str(given["dask_tls_ca"]),
        tls_client_cert=str(given["dask_tls_cert"]),
        tls_client_key=str(given["dask_tls_key"]),
        require_encryption=True,
    )


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no answer'}"


def _refused_tls(exc: BaseException) -> bool:
    """The connection failed in the TLS handshake: a certificate one side did not accept (or a bad key)."""
    import ssl

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "SSL" in str(seen) or "handshake" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


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

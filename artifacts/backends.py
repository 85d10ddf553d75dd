"""Where artifacts and corpus versions live: the local folder and catalog under CHARFLOW_HOME (the default,
nothing to install), or what every machine shares: an S3-compatible object store or a shared folder
(CHARFLOW_STORE_URL), and PostgreSQL (CHARFLOW_CATALOG_URL)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from artifacts.catalog import Catalog, JsonlCatalog
from artifacts.remote import RemoteError, RemoteStore
from artifacts.remote_folder import FolderRemote
from artifacts.remote_s3 import S3Remote
from artifacts.secrets import redact
from artifacts.settings import environment, on_reset, variable
from artifacts.store import Store
from tasks.errors import CharflowError

STORE_URL = variable("store_url")
CATALOG_URL = variable("catalog_url")


class BackendError(CharflowError):
    """A combination of backends that cannot work, or a URL that names none."""


def urls() -> tuple[str | None, str | None]:
    """The store's and the catalog's URLs, refused before any work when they cannot work together."""
    configured = environment()
    store, catalog = configured.store_url, configured.catalog_url
    if catalog and not store:
        raise BackendError(
            f"{CATALOG_URL} is set but {STORE_URL} is not: a shared catalog would name artifacts that only this "
            f"machine's folder holds; set {STORE_URL} to the shared object store too, or unset {CATALOG_URL}"
        )
    if store:
        store_scheme(store)
    if catalog and not catalog.startswith(("postgresql://", "postgres://")):
        raise BackendError(
            f"{CATALOG_URL}={redact(catalog)!r} is not postgresql://USER@HOST:PORT/DB; fix {CATALOG_URL}"
        )
    return store, catalog


def store_scheme(url: str) -> str:
    """s3 or file; any other URL refused before any work."""
    scheme = url.partition(":")[0].lower()
    if scheme not in ("s3", "file"):
        raise RemoteError(f"{STORE_URL}={redact(url)!r} is not s3://BUCKET/PREFIX or file:///PATH; fix {STORE_URL}")
    return scheme


def remote_at(url: str) -> RemoteStore:
    """The shared store a URL names, by its scheme (not checked yet)."""
    return S3Remote.from_url(url) if store_scheme(url) == "s3" else FolderRemote.from_url(url)


@cache
def _remote(url: str) -> RemoteStore:
    remote = remote_at(url)
    remote.check()
    return remote


@cache
def _postgres(url: str) -> Catalog:
    from artifacts.catalog_pg import PostgresCatalog

    catalog = PostgresCatalog(url)
    catalog.check()
    return catalog


# Connections are opened once per URL; settings.reset() forgets them.
on_reset(_remote.cache_clear)
on_reset(_postgres.cache_clear)


def open_store(root: Path) -> Store:
    """The local folder at `root`; with CHARFLOW_STORE_URL, that folder as this machine's copy of the shared
    store (checked on first use: the bucket and the credentials, or the shared folder)."""
    url, _ = urls()
    return Store(root, _remote(url) if url else None)


def open_catalog(root: Path) -> Catalog:
    _, url = urls()
    return _postgres(url) if url else JsonlCatalog(root)


def check(root: Path) -> None:
    """Open both backends: the shared ones answer and accept the credentials, or the error names the fix."""
    open_store(root)
    open_catalog(root)


def describe() -> str:
    """One line for `inspect`: which backends this machine reads."""
    store, catalog = urls()
    return (
        f"store: {redact(store) if store else 'local folder'}; "
        f"catalog: {redact(catalog) if catalog else 'local catalog.jsonl'}"
    )

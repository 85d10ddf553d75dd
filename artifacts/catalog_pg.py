"""The catalog in PostgreSQL: the same entries as the local JSON-lines file, shared by every machine.

Writers take a transaction-scoped advisory lock (released by the server when the transaction ends or the
client's connection dies: it cannot outlive its holder), and unique indexes make a second number for one
content, or one number for two contents, impossible whatever a client does. Tables are created on first use
by numbered migrations, recorded in `charflow_schema`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from artifacts.catalog import Catalog, CatalogError
from artifacts.remote import redact

# pg_advisory_xact_lock's key for the catalog's writers: 'charflow' in ASCII.
LOCK_ID = 0x63686172666C6F77
MIGRATIONS = (
    """
    CREATE TABLE catalog_entries (
        id bigserial PRIMARY KEY,
        event text NOT NULL,
        corpus text,
        version integer,
        sha256 text,
        body jsonb NOT NULL
    );
    CREATE UNIQUE INDEX catalog_one_number_per_content ON catalog_entries (corpus, sha256) WHERE event = 'version';
    CREATE UNIQUE INDEX catalog_one_content_per_number ON catalog_entries (corpus, version) WHERE event = 'version';
    """,
)


class PostgresCatalog(Catalog):
    """`Catalog` with its entries in a PostgreSQL table: reads, registration and records work the same."""

    def __init__(self, url: str):
        self.url = url
        self.path = redact(url)  # what messages name
        self._local = threading.local()
        self._migrated = False

    def _connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            detail = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
            raise CatalogError(
                f"cannot reach the catalog database {self.path} ({detail}); check that it is up and fix "
                "CHARFLOW_CATALOG_URL"
            ) from None

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._local.conn = self._connect()
        if not self._migrated:
            self._migrate(conn)
        return conn

    def _migrate(self, conn: Any) -> None:
        with self._failures("creating its tables"), conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
            conn.execute("CREATE TABLE IF NOT EXISTS charflow_schema (version integer NOT NULL)")
            row = conn.execute("SELECT max(version) FROM charflow_schema").fetchone()
            done = row[0] or 0
            for number, sql in enumerate(MIGRATIONS[done:], start=done + 1):
                conn.execute(sql)
                conn.execute("INSERT INTO charflow_schema (version) VALUES (%s)", (number,))
        self._migrated = True

    def check(self) -> None:
        """Before any work: the database answers and its tables exist."""
        self._connection()

    @contextmanager
    def _failures(self, what: str) -> Iterator[None]:
        import psycopg

        try:
            yield
        except psycopg.OperationalError as exc:
            self._local.conn = None
            raise CatalogError(
                f"the catalog database {self.path} failed while {what} ({str(exc).strip()[:200]}); check that it "
                "is up (CHARFLOW_CATALOG_URL)"
            ) from None

    @contextmanager
    def _locked(self, shared: bool = False) -> Iterator[None]:
        """Writers serialised by the advisory lock inside one transaction; readers see committed rows."""
        if shared or getattr(self._local, "depth", 0):
            self._local.depth = getattr(self._local, "depth", 0) + 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        conn = self._connection()
        with self._failures("writing"), conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
            self._local.depth = 1
            try:
                yield
            finally:
                self._local.depth = 0

    def entries(self) -> list[dict[str, Any]]:
        conn = self._connection()
        with self._failures("reading"):
            return [row[0] for row in conn.execute("SELECT body FROM catalog_entries ORDER BY id")]

    def _append(self, entry: dict[str, Any]) -> None:
        conn = self._connection()
        with self._failures("writing"):
            conn.execute(
                "INSERT INTO catalog_entries (event, corpus, version, sha256, body) VALUES (%s, %s, %s, %s, %s)",
                (
                    entry["event"],
                    entry.get("corpus"),
                    entry.get("version"),
                    entry.get("sha256"),
                    json.dumps(entry, ensure_ascii=False, sort_keys=True),
                ),
            )

"""The catalog in PostgreSQL: the same entries as the local JSON-lines file (`JsonlCatalog`), shared by every
machine.

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

from artifacts.catalog import (
    CatalogError,
    CorpusVersion,
    Entry,
    EntryQueries,
    Rule,
    collected_entry,
    outputs_entry,
    registration,
)
from artifacts.secrets import redact

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


class PostgresCatalog(EntryQueries):
    """The catalog's entries in a PostgreSQL table: reads, registration and records work as on the local file."""

    def __init__(self, url: str):
        self.url = url
        self.path = redact(url)  # what messages name
        self._local = threading.local()  # one connection per thread
        self._migrated = False

    def _connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.ProgrammingError:
            # The driver quotes the part it could not parse, which may be a piece of the password: not shown.
            raise CatalogError(
                f"CHARFLOW_CATALOG_URL={self.path!r} is not a connection URL libpq can parse; percent-encode the "
                "password's special characters (# as %23, / as %2F, ? as %3F, @ as %40, a space as %20) and fix "
                "CHARFLOW_CATALOG_URL"
            ) from None
        except psycopg.OperationalError as exc:
            detail = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
            fix = "check that it is up and fix CHARFLOW_CATALOG_URL"
            if "password" in detail.lower():  # none given, or a wrong one
                fix = "give the password in ~/.pgpass (or PGPASSWORD), or fix CHARFLOW_CATALOG_URL's user"
            elif "encryption" in detail.lower() or "ssl" in detail.lower():
                fix = "set sslmode (e.g. ?sslmode=verify-full) in CHARFLOW_CATALOG_URL as the server requires"
            raise CatalogError(f"cannot reach the catalog database {self.path} ({detail}); {fix}") from None

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
    def _writing(self) -> Iterator[Any]:
        """One transaction holding the writers' advisory lock: its connection, to read the entries and append."""
        conn = self._connection()
        with self._failures("writing"), conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
            yield conn

    def _rows(self, conn: Any) -> list[Entry]:
        with self._failures("reading"):
            return [row[0] for row in conn.execute("SELECT body FROM catalog_entries ORDER BY id")]

    def _insert(self, conn: Any, entry: Entry) -> None:
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

    def entries(self) -> list[Entry]:
        """Committed entries only: a writer's transaction is seen whole or not at all."""
        return self._rows(self._connection())

    def register(self, corpus: str, sha256: str, size: int, source: str, ingest_key: str) -> CorpusVersion:
        with self._writing() as conn:
            version, entry = registration(self._rows(conn), corpus, sha256, size, source, ingest_key)
            if entry is not None:
                self._insert(conn, entry)
        return version

    def append(self, rule: Rule) -> Entry | None:
        with self._writing() as conn:
            if (entry := rule(self._rows(conn))) is not None:
                self._insert(conn, entry)
        return entry

    def record_outputs(self, corpus: str, version: int, outputs: dict[str, str]) -> None:
        self.append(lambda entries: outputs_entry(entries, corpus, version, outputs))

    def record_collected(self, keys: list[str]) -> None:
        if keys:
            self.append(lambda entries: collected_entry(keys))

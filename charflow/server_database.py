"""A new home's Prefect database, copied from a migrated template instead of migrated from nothing.

Migrating an empty SQLite database to Prefect's schema and registering its block types took 6 of the 10 CPU
seconds of a home server's first start (measured on 2 cores; a restart on a migrated database takes 4). The
template is made once per Prefect version, by the first server that needs it, in the user's cache
(`$XDG_CACHE_HOME/charflow`, else `~/.cache/charflow`), and copied into each new home. The server then runs
its migrations and block registration as always: on a database already at its head they find nothing to do.

Anything wrong with the template (unreadable, damaged, a full disk) costs only the time it would have saved:
the home's database is then made by the server, as before.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
import sqlite3
from contextlib import closing, suppress
from pathlib import Path

SQLITE_PREFIX = "sqlite+aiosqlite:///"

logger = logging.getLogger("charflow.home_server")


def cache_folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "charflow"


def seed(database_url: str) -> bool:
    """Copy the installed Prefect's template to the SQLite file `database_url` names when that file does not exist
    yet: True when copied. Another database (PostgreSQL, an in-memory one) or an existing file is left alone."""
    if not database_url.startswith(SQLITE_PREFIX) or ":memory:" in database_url:
        return False
    database = Path(database_url.removeprefix(SQLITE_PREFIX).split("?", 1)[0])
    if database.exists():
        return False
    partial = database.with_name(f".{database.name}.{os.getpid()}")
    try:
        template = _template()
        database.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, partial)
        os.replace(partial, database)  # a torn copy is never taken for a database
        return True
    except Exception as exc:  # noqa: BLE001 - the server makes the database itself, as without a template
        logger.warning("no Prefect database template (%s); this home's database is made from nothing", exc)
        with suppress(OSError):
            partial.unlink(missing_ok=True)
        return False


def _template() -> Path:
    """This Prefect version's migrated database, made under a lock by the first process that needs it."""
    from prefect import __version__ as version

    folder = cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    template = folder / f"prefect-{version}.db"
    if _sound(template):
        return template
    fd = os.open(folder / f"prefect-{version}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not _sound(template):
            _make(template)
    finally:
        os.close(fd)
    return template


def _sound(template: Path) -> bool:
    """The template is a whole SQLite database that Prefect's migrations have run on."""
    if not template.is_file():
        return False
    try:
        with closing(sqlite3.connect(f"file:{template}?mode=ro", uri=True)) as db:
            (check,) = db.execute("PRAGMA quick_check").fetchone()
            return check == "ok" and db.execute("SELECT version_num FROM alembic_version").fetchone() is not None
    except sqlite3.Error:
        return False


def _make(template: Path) -> None:
    """Migrate a scratch database, register the block types, and keep a one-file copy of it as the template."""
    from prefect.server.database import provide_database_interface
    from prefect.server.database.dependencies import temporary_database_interface
    from prefect.server.models.block_registration import run_block_auto_registration
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, temporary_settings

    scratch = template.with_name(f".{template.stem}.{os.getpid()}.scratch.db")
    partial = template.with_name(f".{template.name}.{os.getpid()}")

    async def migrate() -> None:
        db = provide_database_interface()
        try:
            await db.create_db()
            async with await db.session() as session:
                await run_block_auto_registration(session=session)
        finally:
            await (await db.engine()).dispose()

    try:
        # Prefect keeps the database it was first asked for: the scratch one is forgotten after, for the home's.
        with (
            temporary_settings({PREFECT_API_DATABASE_CONNECTION_URL: f"{SQLITE_PREFIX}{scratch}"}),
            temporary_database_interface(),
        ):
            asyncio.run(migrate())
        # SQLite's backup: one consistent file, whatever the scratch database's write-ahead log still held.
        # A rollback journal, not a write-ahead log: reading the template leaves no -wal or -shm file beside it
        # (Prefect turns the log on again in each home's copy).
        with closing(sqlite3.connect(scratch)) as source, closing(sqlite3.connect(partial)) as copy:
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")
        os.replace(partial, template)
    finally:
        for path in (partial, scratch, Path(f"{scratch}-wal"), Path(f"{scratch}-shm")):
            path.unlink(missing_ok=True)

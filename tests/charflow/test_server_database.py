"""A new home's Prefect database is a copy of a migrated template, made once per Prefect version; a damaged
template is made again, and the Prefect server of the process is left on its own database."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import prefect
import pytest

from charflow import server_database

VERSION = prefect.__version__


def head(database) -> str:
    with closing(sqlite3.connect(database)) as db:
        return db.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def block_types(database) -> int:
    with closing(sqlite3.connect(database)) as db:
        return db.execute("SELECT count(*) FROM block_type").fetchone()[0]


def sqlite_head() -> str:
    """The last of Prefect's SQLite migrations."""
    from pathlib import Path

    import prefect.server.database
    from alembic.script import ScriptDirectory

    migrations = Path(prefect.server.database.__file__).parent / "_migrations"
    scripts = ScriptDirectory(str(migrations), version_locations=[str(migrations / "versions" / "sqlite")])
    (latest,) = scripts.get_heads()
    return latest


def url(path) -> str:
    return f"{server_database.SQLITE_PREFIX}{path}"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "charflow"


@pytest.mark.slow
def test_a_new_home_gets_the_template_made_once_and_the_process_keeps_its_own_database(tmp_path, cache):
    from prefect.server.database import provide_database_interface
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    own = PREFECT_API_DATABASE_CONNECTION_URL.value()
    first, second = tmp_path / "a" / "prefect.db", tmp_path / "b" / "prefect.db"
    assert server_database.seed(url(first))
    template = cache / f"prefect-{VERSION}.db"
    made = template.stat().st_mtime_ns
    assert server_database.seed(url(second))
    assert template.stat().st_mtime_ns == made  # made once
    assert sorted(p.name for p in cache.iterdir()) == [f"prefect-{VERSION}.db", f"prefect-{VERSION}.lock"]
    assert head(first) == head(second) == sqlite_head()
    assert block_types(second) > 0
    # The scratch database the template was made on is forgotten: Prefect's interface is this process's again.
    assert provide_database_interface().database_config.connection_url == own


def test_an_existing_database_or_another_kind_is_left_alone(tmp_path, cache):
    existing = tmp_path / "prefect.db"
    existing.write_bytes(b"a home's own runs")
    assert not server_database.seed(url(existing))
    assert existing.read_bytes() == b"a home's own runs"
    assert not server_database.seed("postgresql+asyncpg://prefect@127.0.0.1/prefect")
    assert not server_database.seed("sqlite+aiosqlite:///:memory:")
    assert not cache.exists()


@pytest.mark.slow
def test_a_damaged_template_is_made_again(tmp_path, cache):
    cache.mkdir(parents=True)
    template = cache / f"prefect-{VERSION}.db"
    template.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)  # torn
    assert server_database.seed(url(tmp_path / "prefect.db"))
    assert head(template) == head(tmp_path / "prefect.db")


def test_no_template_leaves_the_database_to_the_server(tmp_path, cache, caplog):
    cache.parent.mkdir()
    cache.write_text("a file where the cache folder goes")
    database = tmp_path / "prefect.db"
    assert not server_database.seed(url(database))
    assert not database.exists()
    assert list(tmp_path.glob(".prefect.db.*")) == []
    assert "no Prefect database template" in caplog.text

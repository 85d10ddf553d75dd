"""The catalog in PostgreSQL (a throwaway cluster): what only a shared database can do or suffer. What every
catalog does, the file's and the database's alike, is tests/artifacts/test_catalog.py's."""

import concurrent.futures
import json

import pytest

from artifacts import settings
from artifacts.catalog import CatalogError
from artifacts.catalog_pg import PostgresCatalog
from artifacts.secrets import redact
from flows.pipeline import PrepareParams
from tasks.fetch import resolve_source
from tasks.vocab import VocabParams
from tests.helpers import machine, prepare_jaychou


def test_two_machines_registering_at_once_make_one_version_per_content(catalog_database):
    url = catalog_database
    contents = [f"{i:064x}" for i in range(6)]

    def register(sha):
        return PostgresCatalog(url).register("songs", sha, 1, "songs.txt", "k" * 64).version

    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # each its own connection: two machines' worth
        numbers = list(pool.map(register, contents * 3))
    by_content = {}
    for sha, number in zip(contents * 3, numbers, strict=True):
        by_content.setdefault(sha, set()).add(number)
    assert all(len(n) == 1 for n in by_content.values())  # never two numbers for one content
    assert sorted(n.pop() for n in by_content.values()) == [1, 2, 3, 4, 5, 6]  # never one number for two


def test_the_database_refuses_a_second_number_for_one_content_whatever_a_client_does(catalog_database):
    import psycopg

    PostgresCatalog(catalog_database).register("songs", "a" * 64, 1, "songs.txt", "k" * 64)
    body = json.dumps({"event": "version", "corpus": "songs", "version": 2, "sha256": "a" * 64})
    with psycopg.connect(catalog_database, autocommit=True) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            "INSERT INTO catalog_entries (event, corpus, version, sha256, body) VALUES (%s, %s, %s, %s, %s)",
            ("version", "songs", 2, "a" * 64, body),
        )


def test_an_unreachable_database_is_refused_before_any_work_naming_the_variable():
    """(The object store's half: tests/artifacts/test_remote.py.)"""
    secret = "postgresql://charflow:hunter2@127.0.0.1:9/charflow"
    with pytest.raises(CatalogError, match="cannot reach the catalog database .*fix CHARFLOW_CATALOG_URL") as caught:
        PostgresCatalog(secret).check()
    assert "hunter2" not in str(caught.value)
    assert "charflow:***@127.0.0.1:9" in str(caught.value)
    assert redact(secret) == "postgresql://charflow:***@127.0.0.1:9/charflow"


def test_the_database_going_away_mid_run_names_its_url(shared_backends, tmp_path, lyrics_zip, monkeypatch):
    from tests.services import postgres_cluster

    with postgres_cluster() as url:
        monkeypatch.setenv("CHARFLOW_CATALOG_URL", url)
        settings.reset()
        runner = machine(tmp_path / "a")
        made = prepare_jaychou(runner, lyrics_zip)
    # The cluster is stopped now: registering another version cannot be done, and says where it failed.
    from flows.pipeline import prepare

    with pytest.raises(CatalogError, match=rf"catalog database {url} failed while .*check that it is up"):
        prepare(runner, resolve_source(str(lyrics_zip), "jaychou"), PrepareParams(vocab=VocabParams(order="frequency")))
    assert runner.store.remote.manifest("ingest", made.stages["ingest"].key) is not None  # published stays

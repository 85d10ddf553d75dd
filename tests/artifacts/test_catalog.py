"""The catalog's behaviour on each place it keeps its entries: the JSON-lines file and PostgreSQL; then what
only the file can suffer (a crash mid-line)."""

import hashlib
import json
import logging
import multiprocessing

import pytest

from artifacts.catalog import Catalog, CatalogError, JsonlCatalog
from artifacts.catalog_pg import PostgresCatalog


@pytest.fixture(params=["jsonl", "postgres"])
def where(request, tmp_path) -> str:
    """Where a catalog keeps its entries: a store folder (its catalog.jsonl) or a fresh PostgreSQL database."""
    return str(tmp_path) if request.param == "jsonl" else request.getfixturevalue("catalog_database")


def opened(where: str) -> Catalog:
    """The catalog there, opened anew (as another process or machine would)."""
    return PostgresCatalog(where) if where.startswith("postgresql://") else JsonlCatalog(where)


def test_versions_follow_content(where):
    catalog = opened(where)
    v1 = catalog.register("songs", "a" * 64, 10, "songs.txt", "k1")
    again = catalog.register("songs", "a" * 64, 10, "elsewhere/songs.txt", "k1")
    v2 = catalog.register("songs", "b" * 64, 11, "songs.txt", "k2")
    other = catalog.register("poems", "a" * 64, 10, "poems.txt", "k1")
    assert (v1.version, v1.new) == (1, True)
    assert (again.version, again.new) == (1, False)
    assert (v2.version, v2.new) == (2, True)
    assert (other.version, other.new) == (1, True)
    assert [(v.corpus, v.version) for v in catalog.versions()] == [("songs", 1), ("songs", 2), ("poems", 1)]
    assert [v.source for v in opened(where).versions("songs")] == ["songs.txt", "songs.txt"]


def _register_many(where: str, worker: int) -> list[int]:
    catalog = opened(where)
    return [
        catalog.register("c", hashlib.sha256(f"{worker}-{i}".encode()).hexdigest(), 1, "s", "k").version
        for i in range(25)
    ]


def test_two_processes_lose_no_line(where):
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.starmap(_register_many, [(where, 0), (where, 1)])
    versions = sorted(v for r in results for v in r)
    assert versions == list(range(1, 51))
    assert len(opened(where).versions("c")) == 50


def test_a_version_is_complete_once_every_prepare_output_is_recorded(where):
    catalog = opened(where)
    catalog.register("songs", "a" * 64, 10, "songs.txt", "k1")
    catalog.register("songs", "b" * 64, 11, "songs.txt", "k2")
    catalog.record_outputs("songs", 1, {"ingest": "i1", "clean": "c1", "vocab": "v1", "encode": "e1"})
    catalog.record_outputs("songs", 2, {"ingest": "i2"})  # a run killed after ingest
    assert catalog.complete("songs") == [1]
    assert catalog.outputs("songs", 2) == [{"ingest": "i2"}]


def test_a_reader_never_sees_a_line_being_appended(where, caplog):
    writer = multiprocessing.get_context("fork").Process(target=_register_many, args=(where, 0))
    writer.start()
    seen = 0
    with caplog.at_level(logging.WARNING, logger="charflow.catalog"):
        while writer.is_alive() or seen < 25:
            seen = len(opened(where).versions("c"))
    writer.join()
    assert seen == 25
    assert "cut short" not in caplog.text


def test_a_key_collected_then_made_again_is_no_longer_collected(where):
    catalog = opened(where)
    outputs = {"ingest": "i1", "clean": "c1", "vocab": "v1", "encode": "e1"}
    catalog.record_outputs("songs", 1, outputs)
    catalog.record_collected(["c1", "x9"])
    assert catalog.collected() == {"c1", "x9"}
    catalog.record_outputs("songs", 1, outputs)  # the same run again rebuilds c1: recorded anew
    assert catalog.collected() == {"x9"}
    catalog.record_outputs("songs", 1, outputs)  # and once only
    assert len([e for e in catalog.entries() if e["event"] == "outputs"]) == 2


def test_a_torn_last_line_is_ignored_then_repaired(tmp_path, caplog):
    catalog = JsonlCatalog(tmp_path)
    catalog.register("songs", "a" * 64, 10, "songs.txt", "k1")
    intact = catalog.path.read_bytes()
    catalog.path.write_bytes(intact + b'{"corpus": "songs", "event": "vers')  # a crash mid-append
    with caplog.at_level(logging.WARNING, logger="charflow.catalog"):
        assert [v.version for v in catalog.versions("songs")] == [1]
    assert "line 2 was cut short by a crash: ignored" in caplog.text
    assert catalog.register("songs", "b" * 64, 11, "songs.txt", "k2").version == 2
    lines = catalog.path.read_bytes().splitlines(keepends=True)
    assert lines[0] == intact
    assert len(lines) == 2
    assert all(json.loads(line) for line in lines)


def test_a_complete_last_entry_without_its_newline_is_kept(tmp_path):
    catalog = JsonlCatalog(tmp_path)
    catalog.register("songs", "a" * 64, 10, "songs.txt", "k1")
    catalog.path.write_bytes(catalog.path.read_bytes().rstrip(b"\n"))
    assert catalog.register("songs", "b" * 64, 11, "songs.txt", "k2").version == 2
    assert [v.version for v in JsonlCatalog(tmp_path).versions("songs")] == [1, 2]


def test_any_other_bad_line_names_the_file_and_line(tmp_path):
    catalog = JsonlCatalog(tmp_path)
    catalog.register("songs", "a" * 64, 10, "songs.txt", "k1")
    catalog.path.write_bytes(b"not json\n" + catalog.path.read_bytes())
    with pytest.raises(CatalogError, match=r"catalog.jsonl, line 1: not a catalog entry .*remove that line"):
        catalog.versions()

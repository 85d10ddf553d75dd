import hashlib
import json
import logging
import multiprocessing

import pytest

from artifacts.catalog import Catalog, CatalogError


def test_versions_follow_content(tmp_path):
    catalog = Catalog(tmp_path)
    v1 = catalog.register("songs", "a" * 64, 10, "songs.txt", "k1")
    again = catalog.register("songs", "a" * 64, 10, "elsewhere/songs.txt", "k1")
    v2 = catalog.register("songs", "b" * 64, 11, "songs.txt", "k2")
    other = catalog.register("poems", "a" * 64, 10, "poems.txt", "k1")
    assert (v1.version, v1.new) == (1, True)
    assert (again.version, again.new) == (1, False)
    assert (v2.version, v2.new) == (2, True)
    assert (other.version, other.new) == (1, True)
    assert [(v.corpus, v.version) for v in catalog.versions()] == [("songs", 1), ("songs", 2), ("poems", 1)]


def _register_many(root: str, worker: int) -> list[int]:
    catalog = Catalog(root)
    return [
        catalog.register("c", hashlib.sha256(f"{worker}-{i}".encode()).hexdigest(), 1, "s", "k").version
        for i in range(25)
    ]


def test_two_processes_lose_no_line(tmp_path):
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.starmap(_register_many, [(str(tmp_path), 0), (str(tmp_path), 1)])
    versions = sorted(v for r in results for v in r)
    assert versions == list(range(1, 51))
    assert len(Catalog(tmp_path).versions("c")) == 50


def test_a_torn_last_line_is_ignored_then_repaired(tmp_path, caplog):
    catalog = Catalog(tmp_path)
    catalog.register("songs", "a" * 64, 10, "songs.txt", "k1")
    intact = catalog.path.read_bytes()
    catalog.path.write_bytes(intact + b'{"corpus": "songs", "event": "vers')  # a crash mid-append
    with caplog.at_level(logging.WARNING, logger="charflow.catalog"):
        assert [v.version for v in catalog.versions("songs")] == [1]
    assert "line 2 was cut short by a crash: ignored" in caplog.text
    assert catalog.register("songs", "b" * 64, 11, "songs.txt", "k2").version == 2
    lines = catalog.path.read_bytes().splitlines(keepends=True)
    assert lines[0] == intact and len(lines) == 2 and all(json.loads(line) for line in lines)


def test_a_complete_last_entry_without_its_newline_is_kept(tmp_path):
    catalog = Catalog(tmp_path)
    catalog.register("songs", "a" * 64, 10, "songs.txt", "k1")
    catalog.path.write_bytes(catalog.path.read_bytes().rstrip(b"\n"))
    assert catalog.register("songs", "b" * 64, 11, "songs.txt", "k2").version == 2
    assert [v.version for v in Catalog(tmp_path).versions("songs")] == [1, 2]


def test_any_other_bad_line_names_the_file_and_line(tmp_path):
    catalog = Catalog(tmp_path)
    catalog.register("songs", "a" * 64, 10, "songs.txt", "k1")
    catalog.path.write_bytes(b"not json\n" + catalog.path.read_bytes())
    with pytest.raises(CatalogError, match=r"catalog.jsonl, line 1: not a catalog entry .*remove that line"):
        catalog.versions()


def test_a_version_is_complete_once_every_prepare_output_is_recorded(tmp_path):
    catalog = Catalog(tmp_path)
    catalog.register("songs", "a" * 64, 10, "songs.txt", "k1")
    catalog.register("songs", "b" * 64, 11, "songs.txt", "k2")
    catalog.record_outputs("songs", 1, {"ingest": "i1", "clean": "c1", "vocab": "v1", "encode": "e1"})
    catalog.record_outputs("songs", 2, {"ingest": "i2"})  # a run killed after ingest
    assert catalog.complete("songs") == [1]


def test_a_reader_never_sees_a_line_being_appended(tmp_path, caplog):
    writer = multiprocessing.get_context("fork").Process(target=_register_many, args=(str(tmp_path), 0))
    writer.start()
    seen = 0
    with caplog.at_level(logging.WARNING, logger="charflow.catalog"):
        while writer.is_alive() or seen < 25:
            seen = len(Catalog(tmp_path).versions("c"))
    writer.join()
    assert seen == 25 and "cut short" not in caplog.text


def test_a_key_collected_then_made_again_is_no_longer_collected(tmp_path):
    catalog = Catalog(tmp_path)
    outputs = {"ingest": "i1", "clean": "c1", "vocab": "v1", "encode": "e1"}
    catalog.record_outputs("songs", 1, outputs)
    catalog.record_collected(["c1", "x9"])
    assert catalog.collected() == {"c1", "x9"}
    catalog.record_outputs("songs", 1, outputs)  # the same run again rebuilds c1: recorded anew
    assert catalog.collected() == {"x9"}
    catalog.record_outputs("songs", 1, outputs)  # and once only
    assert len([e for e in catalog.entries() if e["event"] == "outputs"]) == 2

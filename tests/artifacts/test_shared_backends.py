"""The whole pipeline on the shared backends: two homes stand for two machines, each its own CHARFLOW_HOME
folder, both the same URLs (the object store or the shared folder, and PostgreSQL)."""

import json

import pytest

from artifacts import backends
from artifacts.manifest import MANIFEST_NAME
from flows.pipeline import batches
from tasks.batches import BatchesParams
from tasks.fetch import resolve_source
from tests.helpers import machine, prepare_jaychou


def test_what_one_machine_prepared_another_finds_as_cache_hits(any_shared_backends, tmp_path, lyrics_zip):
    source = resolve_source(str(lyrics_zip), "jaychou")
    first = batches(machine(tmp_path / "a"), source, sampler=BatchesParams(epochs=2))
    assert not any(ref.cache_hit for ref in first.stages.values())
    second_machine = machine(tmp_path / "b")
    second = batches(second_machine, source, sampler=BatchesParams(epochs=2))
    assert {s: r.cache_hit for s, r in second.stages.items()} == {s: True for s in first.stages}
    assert {s: r.key for s, r in second.stages.items()} == {s: r.key for s, r in first.stages.items()}
    assert (second.corpus, second.version, second.new_version) == ("jaychou", 1, False)
    # B holds its own copy now, byte for byte A's, with A's manifest.
    for stage, ref in second.stages.items():
        assert ref.path.is_relative_to(tmp_path / "b")
        theirs = first.stages[stage].path
        assert (ref.path / MANIFEST_NAME).read_text() == (theirs / MANIFEST_NAME).read_text()
        for name in json.loads((theirs / MANIFEST_NAME).read_text())["files"]:
            assert (ref.path / name["name"]).read_bytes() == (theirs / name["name"]).read_bytes()
    # A third machine lists what is published without having fetched anything.
    listed = backends.open_store(tmp_path / "c" / "store").entries(["ingest", "vocab", "batches"])
    assert {e.key for e in listed} == {first.stages[s].key for s in ("ingest", "vocab", "batches")}
    assert second_machine.catalog.complete("jaychou") == [1]


def test_a_catalog_without_a_shared_store_is_refused(monkeypatch, postgres_url):
    monkeypatch.delenv("CHARFLOW_STORE_URL", raising=False)
    monkeypatch.setenv("CHARFLOW_CATALOG_URL", postgres_url)
    with pytest.raises(backends.BackendError, match="CHARFLOW_CATALOG_URL is set but CHARFLOW_STORE_URL is not"):
        backends.urls()


def test_a_machine_with_other_library_versions_says_which(shared_backends, tmp_path, lyrics_zip, monkeypatch):
    from artifacts import stages
    from flows.pipeline import prepare

    source = resolve_source(str(lyrics_zip), "jaychou")
    prepare(machine(tmp_path / "a"), source)
    vocab = stages.STAGES["vocab"]
    other = {**vocab.libraries_now, "numpy": "0.0.1"}
    monkeypatch.setitem(vocab.__dict__, "libraries_now", other)  # machine B's numpy
    monkeypatch.setattr(stages, "_warned", set())
    events = []
    b = machine(tmp_path / "b")
    b.on_event = events.append
    made = prepare(b, source)
    said = [str(e) for e in events if isinstance(e, stages.OtherLibraries)]
    assert not made.stages["vocab"].cache_hit
    assert made.stages["ingest"].cache_hit
    assert any(s.startswith("numpy 0.0.1 is installed, but vocab artifact") for s in said), said


def test_gc_with_a_shared_store_clears_this_machines_copies_beyond_the_bound(
    shared_backends, tmp_path, lyrics_zip, monkeypatch
):
    from artifacts import upkeep

    a = machine(tmp_path / "a")
    made = prepare_jaychou(a, lyrics_zip)
    sizes = {stage: sum(f.stat().st_size for f in ref.path.iterdir()) for stage, ref in made.stages.items()}
    monkeypatch.setenv("CHARFLOW_CACHE_BYTES", str(sizes["encode"] + sizes["vocab"] + 10_000))
    a.store.lookup("vocab", made.stages["vocab"].key)  # used last: kept
    a.store.lookup("encode", made.stages["encode"].key)
    report = upkeep.gc(a.store, a.catalog, delete=True)
    evicted = {d["stage"] for d in report["artifacts"]}
    assert evicted == {"ingest", "clean"}, report["artifacts"]
    assert not made.stages["ingest"].path.exists()
    assert made.stages["encode"].path.exists()
    assert a.catalog.collected() == set()  # nothing was removed from the shared store
    assert upkeep.verify(a.store, a.catalog)["missing"] == []  # the shared store still holds them
    again = prepare_jaychou(a, lyrics_zip)  # fetched back as cache hits
    assert all(ref.cache_hit for ref in again.stages.values())
    assert made.stages["ingest"].path.exists()


def test_a_damaged_local_copy_is_fetched_again_from_the_shared_store(shared_backends, tmp_path, lyrics_zip):
    a = machine(tmp_path / "a")
    made = prepare_jaychou(a, lyrics_zip).stages["encode"]
    (made.path / "indices.parquet").write_bytes(b"torn")
    again = prepare_jaychou(a, lyrics_zip).stages["encode"]
    assert again.cache_hit
    assert again.key == made.key
    assert a.store.lookup("encode", made.key, thorough=True) is not None  # intact again, not recomputed

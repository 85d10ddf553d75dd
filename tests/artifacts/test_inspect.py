"""Inspection functions on a store of two corpus versions: verify finds damage, gc keeps the latest versions."""

import pytest

from artifacts import inspect
from flows.pipeline import batches, plain_runner
from tasks.batches import BatchesParams
from tasks.fetch import resolve_source


@pytest.fixture
def store(tmp_path, lyrics_text):
    runner = plain_runner(tmp_path / "store")
    song = tmp_path / "songs.txt"
    spec = BatchesParams(batch_size=4, num_steps=8, epochs=1)
    song.write_text(lyrics_text[:1000], encoding="utf-8")
    first = batches(runner, resolve_source(str(song)), sampler=spec)
    song.write_text(lyrics_text[:1000] + "☃", encoding="utf-8")
    second = batches(runner, resolve_source(str(song)), sampler=spec)
    return runner, first, second


def test_verify_names_each_damaged_file(store):
    runner, first, _ = store
    assert inspect.verify(runner.store) == []
    target = first.stages["vocab"].file("vocab.parquet")
    with target.open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\0\0\0\0")
    (first.stages["clean"].file("_manifest.json")).write_text("{torn")
    bad = inspect.verify(runner.store)
    assert [(b["stage"], b["key"]) for b in bad] == sorted(
        [("clean", first.stages["clean"].key), ("vocab", first.stages["vocab"].key)]
    )
    assert bad[0]["problems"] == ["_manifest.json: unreadable (JSONDecodeError)"]
    assert bad[1]["problems"] == ["vocab.parquet: sha256 differs from the manifest"]


def test_gc_keeps_what_the_latest_versions_reach(store):
    runner, first, second = store
    doomed = {d["key"] for d in inspect.gc(runner.store, runner.catalog, delete=False)}
    kept = {ref.key for ref in second.stages.values()}
    assert doomed == {ref.key for ref in first.stages.values()} - kept
    assert first.stages["vocab"].key in doomed and first.stages["ingest"].key in doomed
    assert {d["key"] for d in inspect.gc(runner.store, runner.catalog, delete=True)} == doomed
    left = {e.key for e in runner.store.entries(["ingest", "clean", "vocab", "encode", "batches"])}
    assert left == kept and inspect.verify(runner.store) == []


def test_lineage_and_show_of_a_batches_artifact(store):
    runner, _, second = store
    entry = inspect.entry(second.stages["batches"])
    chain = inspect.lineage(runner.store, entry)
    assert [c["stage"] for c in chain] == ["batches", "encode", "clean", "vocab", "ingest", "source"]
    shown = inspect.show(runner.store, entry)
    assert (
        shown["view"]["first_rows"][0]["x"]
        and "x: fixed_size_list<element: int32>[8]" in shown["schemas"]["batches-00000.parquet"]
    )

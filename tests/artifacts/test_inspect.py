"""Inspection functions on a store of two corpus versions: lineage down to the source, and show."""

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

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
    rows = shown["view"]["first_rows"]
    assert shown["schemas"] == {} and [r["row"] for r in rows] == [0, 1, 2]  # the token stream: no Parquet
    assert all(len(r["x"]) == len(r["y"]) == 8 and r["x"][1:] == r["y"][:-1] for r in rows)


def test_show_decodes_any_batch_of_either_form(store):
    runner, first, _ = store
    spec = BatchesParams(batch_size=4, num_steps=8, epochs=3)
    stream = runner.stage("batches", spec, indices=first.stages["encode"])
    rows = runner.stage("batches", spec.model_copy(update={"materialize": True}), indices=first.stages["encode"])
    for epoch, batch in [(0, 0), (2, 5)]:
        a = inspect.show(runner.store, inspect.entry(stream), (epoch, batch))["view"]["first_rows"]
        b = inspect.show(runner.store, inspect.entry(rows), (epoch, batch))["view"]["first_rows"]
        assert a == b and {(r["epoch"], r["batch"]) for r in a} == {(epoch, batch)}
    schema = inspect.show(runner.store, inspect.entry(rows))["schemas"]["batches-00000.parquet"]
    assert "x: fixed_size_list<element: int32>[8]" in schema

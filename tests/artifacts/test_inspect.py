"""Inspection functions on a store of two corpus versions: lineage down to the source, and show."""

import json
from pathlib import Path

import pytest
import torch

from artifacts import inspect
from artifacts.batch_reader import BatchReader
from artifacts.batches import BatchesSummary
from artifacts.views import NoSuchBatch
from tasks.batches import BatchesParams


def test_lineage_and_show_of_a_batches_artifact(store):
    runner, _, second = store
    entry = inspect.entry(second.stages["batches"])
    chain = inspect.lineage(runner.store, entry)
    assert [c["stage"] for c in chain] == ["batches", "encode", "clean", "vocab", "ingest", "source"]
    shown = inspect.show(runner.store, entry)
    rows = shown["view"]["first_rows"]
    assert shown["schemas"] == {}  # the token stream: no Parquet
    assert [r["row"] for r in rows] == [0, 1, 2]
    assert all(len(r["x"]) == len(r["y"]) == 8 and r["x"][1:] == r["y"][:-1] for r in rows)


def test_show_decodes_any_batch_of_either_form(store):
    runner, first, _ = store
    spec = BatchesParams(batch_size=4, num_steps=8, epochs=3)
    stream = runner.stage("batches", spec, indices=first.stages["encode"])
    rows = runner.stage("batches", spec.model_copy(update={"materialize": True}), indices=first.stages["encode"])
    for epoch, batch in [(0, 0), (2, 5)]:
        a = inspect.show(runner.store, inspect.entry(stream), (epoch, batch))["view"]["first_rows"]
        b = inspect.show(runner.store, inspect.entry(rows), (epoch, batch))["view"]["first_rows"]
        assert a == b
        assert {(r["epoch"], r["batch"]) for r in a} == {(epoch, batch)}
    schema = inspect.show(runner.store, inspect.entry(rows))["schemas"]["batches-00000.parquet"]
    assert "x: fixed_size_list<element: int32>[8]" in schema
    last = BatchesSummary.of(stream).batches_in(2) - 1
    for ref in (stream, rows):
        with pytest.raises(NoSuchBatch, match=r"has epochs 0 to 2; pick one of them"):
            inspect.show(runner.store, inspect.entry(ref), (3, 0))
        with pytest.raises(NoSuchBatch, match=rf"epoch 2 of batches \w+ has batches 0 to {last}; pick one"):
            inspect.show(runner.store, inspect.entry(ref), (2, last + 1))
        assert inspect.show(runner.store, inspect.entry(ref), (2, last))["view"]["first_rows"]


def test_a_batches_artifact_from_before_the_token_stream_is_read_by_its_shards(store):
    """Such artifacts hold shards and a spec without `materialize`: shown and read as materialized."""
    runner, first, _ = store
    spec = BatchesParams(batch_size=4, num_steps=8, epochs=2, materialize=True)
    ref = runner.stage("batches", spec, indices=first.stages["encode"])
    want = [(x.clone(), y.clone()) for x, y in BatchReader(ref.path)]
    manifest = Path(ref.path) / "_manifest.json"
    old = json.loads(manifest.read_text())
    del old["summary"]["spec"]["materialize"]
    manifest.write_text(json.dumps(old))
    got = list(BatchReader(ref.path))
    assert len(got) == len(want) > 0
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(got, want, strict=True))
    assert inspect.show(runner.store, inspect.entry(ref), (1, 0))["view"]["first_rows"]

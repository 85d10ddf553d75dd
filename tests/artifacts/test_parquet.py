"""Every artifact kind is plain Parquet: pandas, pyarrow and duckdb read it without charflow, with its exact
schema and dtypes; the `charflow` metadata rides along."""

import json

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from artifacts.batch_reader import BatchReader
from artifacts.indices import INDICES_FILE, INDICES_SCHEMA
from artifacts.model import METRICS_FILE, SAMPLES_FILE, SAMPLES_SCHEMA
from artifacts.parquet import read_metadata
from artifacts.text import TEXT_FILE, TEXT_SCHEMA
from artifacts.vocab import VOCAB_FILE, VOCAB_SCHEMA
from tasks.batches import BatchesParams, plan_epoch

PANDAS_STRING = str(pd.Series(["a"]).dtype)  # "object" before pandas 3, "str" since


def test_every_artifact_kind_reads_with_pandas_pyarrow_and_duckdb(two_versions):
    path = {stage: ref.path for stage, ref in two_versions["second"].stages.items()}
    assert pq.read_schema(path["clean"] / TEXT_FILE).remove_metadata() == TEXT_SCHEMA
    text = pd.read_parquet(path["clean"] / TEXT_FILE)
    assert list(text.columns) == ["chunk", "text"]
    assert text["text"].str.cat().startswith("想要有直升机")
    assert pq.read_schema(path["vocab"] / VOCAB_FILE).remove_metadata() == VOCAB_SCHEMA
    assert {k: str(v) for k, v in pd.read_parquet(path["vocab"] / VOCAB_FILE).dtypes.items()} == {
        "index": "int32",
        "token": PANDAS_STRING,
        "count": "int64",
        "reserved": "bool",
    }
    assert pq.read_schema(path["encode"] / INDICES_FILE).remove_metadata() == INDICES_SCHEMA
    indices = pd.read_parquet(path["encode"] / INDICES_FILE)
    assert list(indices.columns) == ["index"]
    assert str(indices["index"].dtype) == "int32"
    metrics = pd.read_parquet(path["train"] / METRICS_FILE)
    assert list(metrics.columns) == ["epoch", "perplexity", "val_perplexity", "tokens_per_s", "grad_norm", "seconds"]
    assert pq.read_table(path["train"] / SAMPLES_FILE).schema.remove_metadata() == SAMPLES_SCHEMA
    count = duckdb.sql(f"select count(*) from '{path['encode']}/{INDICES_FILE}'").fetchall()[0][0]
    assert count == len(indices)


def test_the_token_stream_and_an_epochs_windows_read_without_charflow(two_versions):
    """What the README shows a numpy, pandas or duckdb user: the stream, and the windows of an epoch by the plan."""
    folder = two_versions["second"].stages["batches"].path
    tokens = np.load(folder / "tokens.npy", mmap_mode="r")  # (tokens,) int32, memory-mapped
    spec = json.loads((folder / "_manifest.json").read_text())["summary"]["spec"]
    windows = sliding_window_view(tokens, spec["num_steps"] + 1)
    starts = plan_epoch(len(tokens), BatchesParams(**spec), epoch=0).starts  # (rows,) in (batch, row) order
    x, y = windows[starts, :-1], windows[starts, 1:]  # (rows, num_steps) each
    first = next(iter(BatchReader(folder)))[0]
    assert np.array_equal(x[: spec["batch_size"]], first.numpy())
    assert np.array_equal(x[:, 1:], y[:, :-1])
    stream = duckdb.from_df(pd.DataFrame({"index": tokens}))
    assert stream.aggregate("count(*), max(index)").fetchall() == [(len(tokens), int(tokens.max()))]


def test_materialized_batches_read_as_one_parquet_dataset(book_prepared):
    runner, prepared = book_prepared
    spec = BatchesParams(batch_size=4, num_steps=8, epochs=2, materialize=True)
    folder = runner.stage("batches", spec, indices=prepared.stages["encode"]).path
    batches = pd.read_parquet(folder)  # the whole folder: the manifest's leading underscore skips it
    assert list(batches.columns) == ["epoch", "batch", "row", "start", "x", "y"]
    assert pq.read_table(folder).schema.field("x").type == pa.list_(pa.int32(), 8)
    first = duckdb.sql(f"select epoch, batch, row, x[1] from '{folder}/*.parquet' limit 1").fetchall()
    assert first == [tuple(batches.iloc[0][["epoch", "batch", "row"]]) + (batches.iloc[0]["x"][0],)]


def test_files_carry_their_lineage_in_metadata(two_versions):
    stages = two_versions["second"].stages
    metadata = read_metadata(stages["encode"].path / INDICES_FILE)
    assert metadata["vocab_key"] == stages["vocab"].key
    assert metadata["text_key"] == stages["clean"].key
    assert read_metadata(stages["train"].path / METRICS_FILE)["batches_key"] == stages["batches"].key


def test_a_file_is_hashed_while_it_is_written(tmp_path, monkeypatch):
    from artifacts import manifest
    from artifacts.text import write_text

    write_text(tmp_path, ["想要有直升机 " * 50_000] * 3, {"stage": "test"})
    expected = manifest.file_sha256(tmp_path / TEXT_FILE)
    with monkeypatch.context() as patched:
        patched.setattr(manifest, "file_sha256", lambda path: pytest.fail(f"{path} was read again"))
        entry = manifest.describe_file(tmp_path / TEXT_FILE)  # the digest the follower computed
    assert entry.sha256 == expected
    assert entry.size == (tmp_path / TEXT_FILE).stat().st_size
    write_text(tmp_path, ["first words"], {})
    pq.write_table(pa.table({"chunk": [0], "text": ["other words"]}), tmp_path / TEXT_FILE)  # after its writer
    assert manifest.describe_file(tmp_path / TEXT_FILE).sha256 == manifest.file_sha256(tmp_path / TEXT_FILE)

"""Parquet schemas of each artifact kind, with their streaming writers and readers.

text     text.parquet     chunk: int32, text: large_string   (the text is the chunks joined in order)
vocab    vocab.parquet    index: int32, token: string, count: int64, reserved: bool
indices  indices.parquet  index: int32                       (one row per character)
train    weights.pt (a state dict: torch.load(..., weights_only=True)), training_state.pt (optimizer, epoch),
         metrics.parquet  epoch: int32, perplexity: double, val_perplexity: double (null without a split),
                          tokens_per_s: double, grad_norm: double, seconds: double
         samples.parquet  epoch: int32, prefix: string, text: string;  perplexity.png
batches  batches-NNNNN.parquet  epoch: int32, batch: int32, row: int32, start: int64,
                                x: fixed_size_list<int32>[num_steps], y: fixed_size_list<int32>[num_steps]
                                (rows in (epoch, batch, row) order; one row group per batch)

Each file carries a `charflow` JSON entry in its schema metadata (stage, inputs, vocabulary key...).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

TEXT_FILE = "text.parquet"
VOCAB_FILE = "vocab.parquet"
INDICES_FILE = "indices.parquet"

TEXT_SCHEMA = pa.schema([("chunk", pa.int32()), ("text", pa.large_string())])
VOCAB_SCHEMA = pa.schema(
    [("index", pa.int32()), ("token", pa.string()), ("count", pa.int64()), ("reserved", pa.bool_())]
)
INDICES_SCHEMA = pa.schema([("index", pa.int32())])


METRICS_FILE = "metrics.parquet"
SAMPLES_FILE = "samples.parquet"
METRICS_SCHEMA = pa.schema(
    [
        ("epoch", pa.int32()),
        ("perplexity", pa.float64()),
        ("val_perplexity", pa.float64()),
        ("tokens_per_s", pa.float64()),
        ("grad_norm", pa.float64()),
        ("seconds", pa.float64()),
    ]
)
SAMPLES_SCHEMA = pa.schema([("epoch", pa.int32()), ("prefix", pa.string()), ("text", pa.string())])


def write_rows(path: Path, schema: pa.Schema, rows: list[dict[str, Any]], metadata: dict[str, Any]) -> None:
    """A small table from row dicts (metrics, samples), columns as the schema says."""
    table = pa.Table.from_pylist(rows, schema=_with_metadata(schema, metadata))
    pq.write_table(table, path, write_statistics=True, **VOCAB_OPTIONS)


def batches_schema(num_steps: int) -> pa.Schema:
    return pa.schema(
        [
            ("epoch", pa.int32()),
            ("batch", pa.int32()),
            ("row", pa.int32()),
            ("start", pa.int64()),
            ("x", pa.list_(pa.int32(), num_steps)),
            ("y", pa.list_(pa.int32(), num_steps)),
        ]
    )


def batches_file(shard: int) -> str:
    return f"batches-{shard:05d}.parquet"


# Characters per text row and indices per row group: small enough to stream, large enough to be fast.
TEXT_CHUNK_CHARS = 1 << 20
INDICES_ROW_GROUP = 1 << 20
# Fixed writer options, so the same data always gives the same bytes; chosen by benchmarks/prepare_throughput.py.
# Text stays uncompressed: zstd or lz4 cost 0.25 s per 100 MB, a quarter of the whole pipeline's time.
TEXT_OPTIONS: dict[str, Any] = {"compression": "none"}
VOCAB_OPTIONS: dict[str, Any] = {"compression": "zstd"}
# Indices are already small dense integers: a dictionary only costs time. Splitting the bytes of each
# int32 into streams leaves runs of zero bytes that lz4 squeezes fast (about 55 MB per 38 M characters).
INDICES_OPTIONS: dict[str, Any] = {
    "compression": "lz4",
    "use_dictionary": False,
    "column_encoding": {"index": "BYTE_STREAM_SPLIT"},
}

BATCHES_OPTIONS: dict[str, Any] = {"compression": "lz4", "use_dictionary": False}

METADATA_KEY = b"charflow"


def _with_metadata(schema: pa.Schema, metadata: dict[str, Any]) -> pa.Schema:
    return schema.with_metadata({METADATA_KEY: json.dumps(metadata, ensure_ascii=False, sort_keys=True)})


def read_metadata(path: Path) -> dict[str, Any]:
    raw = pq.read_schema(path).metadata or {}
    return json.loads(raw[METADATA_KEY]) if METADATA_KEY in raw else {}


class _BackgroundWriter:
    """A ParquetWriter fed through a short queue: encoding and compression (which release the GIL)
    overlap with the Python work that produces the next table."""

    def __init__(self, path: Path, schema: pa.Schema, options: dict[str, Any]):
        self._writer = pq.ParquetWriter(path, schema, write_statistics=True, **options)
        self._queue: queue.Queue[pa.Table | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (table := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._writer.write_table(table)
                except BaseException as exc:  # surfaced in write() or close()
                    self._error = exc

    def write(self, table: pa.Table) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(table)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._writer.close()
        if self._error is not None:
            raise self._error


def _utf8_row(text: str) -> pa.Array:
    data = text.encode("utf-8")
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    return pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(data))


def write_text(folder: Path, chunks: Iterable[str], metadata: dict[str, Any]) -> int:
    """Write text given as chunks (re-cut to at most TEXT_CHUNK_CHARS); return its length in characters."""
    writer = _BackgroundWriter(folder / TEXT_FILE, _with_metadata(TEXT_SCHEMA, metadata), TEXT_OPTIONS)
    total = row = 0
    try:
        for chunk in chunks:
            for start in range(0, len(chunk), TEXT_CHUNK_CHARS):
                piece = chunk[start : start + TEXT_CHUNK_CHARS]
                writer.write(pa.table([pa.array([row], pa.int32()), _utf8_row(piece)], schema=TEXT_SCHEMA))
                total += len(piece)
                row += 1
    finally:
        writer.close()
    return total


def write_text_utf8(folder: Path, chunks: Iterable[bytes], metadata: dict[str, Any]) -> int:
    """Write text given as valid UTF-8 chunks, one row each; return its length in characters."""
    writer = _BackgroundWriter(folder / TEXT_FILE, _with_metadata(TEXT_SCHEMA, metadata), TEXT_OPTIONS)
    total = 0
    try:
        for row, data in enumerate(chunks):
            offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
            text = pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(data))
            total += pc.sum(pc.utf8_length(text)).as_py() or 0
            writer.write(pa.table([pa.array([row], pa.int32()), text], schema=TEXT_SCHEMA))
    finally:
        writer.close()
    return total


def prefetch(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Produce `items` in a background thread (Parquet decoding releases the GIL)."""
    buffer: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put((True, item))
            buffer.put((False, None))
        except BaseException as exc:
            buffer.put((False, exc))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            more, item = buffer.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.01)


def _text_batches(folder: Path) -> Iterator[pa.Array]:
    parquet = pq.ParquetFile(folder / TEXT_FILE)
    return prefetch(batch.column(0) for batch in parquet.iter_batches(batch_size=1, columns=["text"]))


def iter_text(folder: Path) -> Iterator[str]:
    """The text's chunks in order, one row at a time."""
    for column in _text_batches(folder):
        yield from column.to_pylist()


def iter_text_utf8(folder: Path) -> Iterator[bytes]:
    """The text's chunks as UTF-8 bytes, without decoding them."""
    for column in _text_batches(folder):
        offsets = np.frombuffer(column.buffers()[1], dtype=np.int64)[column.offset : column.offset + len(column) + 1]
        data = column.buffers()[2]
        for start, end in zip(offsets[:-1], offsets[1:], strict=True):
            yield data[int(start) : int(end)].to_pybytes()


def read_text(folder: Path) -> str:
    return "".join(iter_text(folder))


def write_vocab(folder: Path, tokens: list[str], counts: np.ndarray, reserved: int, metadata: dict[str, Any]) -> None:
    table = pa.table(
        {
            "index": pa.array(np.arange(len(tokens), dtype=np.int32)),
            "token": pa.array(tokens, pa.string()),
            "count": pa.array(np.asarray(counts, dtype=np.int64)),
            "reserved": pa.array(np.arange(len(tokens)) < reserved),
        },
        schema=_with_metadata(VOCAB_SCHEMA, metadata),
    )
    pq.write_table(table, folder / VOCAB_FILE, write_statistics=True, **VOCAB_OPTIONS)


def read_vocab_table(folder: Path) -> pa.Table:
    return pq.read_table(folder / VOCAB_FILE)


def write_indices(folder: Path, chunks: Iterable[np.ndarray], metadata: dict[str, Any]) -> int:
    """Write int32 index chunks, one row group per INDICES_ROW_GROUP rows; return the row count."""
    writer = _BackgroundWriter(folder / INDICES_FILE, _with_metadata(INDICES_SCHEMA, metadata), INDICES_OPTIONS)
    rows = 0
    try:
        for chunk in chunks:
            for start in range(0, len(chunk), INDICES_ROW_GROUP):
                piece = np.ascontiguousarray(chunk[start : start + INDICES_ROW_GROUP], dtype=np.int32)
                writer.write(pa.table([pa.array(piece)], schema=INDICES_SCHEMA))
                rows += len(piece)
    finally:
        writer.close()
    return rows


def read_indices(folder: Path) -> np.ndarray:
    column = pq.read_table(folder / INDICES_FILE, columns=["index"]).column("index")
    return column.to_numpy().astype(np.int32, copy=False)


class BatchShardWriter:
    """One batches shard: each `write` call holds whole batches and becomes one row group per batch."""

    def __init__(self, path: Path, num_steps: int, metadata: dict[str, Any]):
        self.schema = _with_metadata(batches_schema(num_steps), metadata)
        self._writer = _BackgroundWriter(path, self.schema, BATCHES_OPTIONS)

    def write(
        self, epoch: int, batch: np.ndarray, row: np.ndarray, start: np.ndarray, x: np.ndarray, y: np.ndarray
    ) -> None:
        """Rows of one batch: batch, row, start (rows,), x and y (rows, num_steps)."""
        rows, steps = x.shape
        columns = [
            pa.array(np.full(rows, epoch, dtype=np.int32)),
            pa.array(batch.astype(np.int32)),
            pa.array(row.astype(np.int32)),
            pa.array(start.astype(np.int64)),
            pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(x, dtype=np.int32).reshape(-1)), steps),
            pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(y, dtype=np.int32).reshape(-1)), steps),
        ]
        self._writer.write(pa.Table.from_arrays(columns, schema=self.schema))

    def close(self) -> None:
        self._writer.close()


def read_batch_rows(
    path: Path, row_groups: list[int], dtype: np.dtype | type = np.int32
) -> tuple[np.ndarray, np.ndarray]:
    """x and y of the given row groups (batches), concatenated: (rows, num_steps) each, writable, in `dtype`.

    Arrow's buffers are copied once, straight into the result (no intermediate concatenation).
    """
    parquet = pq.ParquetFile(path)
    steps = parquet.schema_arrow.field("x").type.list_size
    if row_groups == list(range(parquet.metadata.num_row_groups)):
        table = parquet.read(columns=["x", "y"], use_threads=False)
    else:
        table = parquet.read_row_groups(row_groups, columns=["x", "y"], use_threads=False)
    result = []
    for name in ("x", "y"):
        out = np.empty((table.num_rows, steps), dtype=dtype)  # (rows, T)
        row = 0
        for chunk in table.column(name).chunks:
            values = chunk.flatten().to_numpy().reshape(-1, steps)  # a view of Arrow's buffer
            out[row : row + len(values)] = values
            row += len(values)
        result.append(out)
    return result[0], result[1]

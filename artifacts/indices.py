"""The indices artifact (encode): `indices.parquet`, the text as vocabulary indices.

indices.parquet   index: int32 not null   (one row per character, 1 Mi-row row groups)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from artifacts.manifest import Summary
from artifacts.parquet import BackgroundWriter, numpy_array, with_metadata

INDICES_FILE = "indices.parquet"
# Not nullable: a nullable column writes a definition level per value, a third of the writer's time.
INDICES_SCHEMA = pa.schema([pa.field("index", pa.int32(), nullable=False)])
INDICES_ROW_GROUP = 1 << 20
WRITE_ROWS = 2 * INDICES_ROW_GROUP  # rows handed to the writer thread at once
# Indices are already small dense integers: a dictionary only costs time. Splitting the bytes of each
# int32 into streams leaves runs of zero bytes that lz4 squeezes fast (about 55 MB per 38 M characters).
# No statistics: min/max pages of indices help no reader, and cost 4 s per billion indices.
INDICES_OPTIONS: dict[str, Any] = {
    "compression": "lz4",
    "use_dictionary": False,
    "column_encoding": {"index": "BYTE_STREAM_SPLIT"},
    "write_statistics": False,
}


class EncodeSummary(Summary):
    rows: int
    vocab_key: str
    vocab_size: int


def write_indices(folder: Path, chunks: Iterable[np.ndarray], metadata: dict[str, Any]) -> int:
    """Write int32 index chunks in row groups of INDICES_ROW_GROUP rows (the last may be shorter); return the
    row count."""
    writer = BackgroundWriter(folder / INDICES_FILE, with_metadata(INDICES_SCHEMA, metadata), INDICES_OPTIONS)
    pending = pa.Table.from_arrays([pa.chunked_array([], pa.int32())], schema=INDICES_SCHEMA)
    rows = 0
    try:
        for chunk in chunks:
            piece = pa.Table.from_arrays([numpy_array(chunk)], schema=INDICES_SCHEMA)
            pending = pa.concat_tables([pending, piece])  # no copy: the pieces become chunks
            if len(pending) >= WRITE_ROWS:
                # Whole row groups at once: the writer thread takes the GIL once per table, not once per
                # group (and each take waits for the producer's decoding to let go of it).
                whole = len(pending) // INDICES_ROW_GROUP * INDICES_ROW_GROUP
                writer.write(pending.slice(0, whole), row_group_size=INDICES_ROW_GROUP)
                pending, rows = pending.slice(whole), rows + whole
        if len(pending):
            writer.write(pending, row_group_size=INDICES_ROW_GROUP)
            rows += len(pending)
    finally:
        writer.close()
    return rows


def iter_indices(folder: Path) -> Iterator[np.ndarray]:
    """The indices row group by row group, (rows,) int32 each: memory holds one group."""
    parquet = pq.ParquetFile(folder / INDICES_FILE, pre_buffer=False)
    for group in range(parquet.metadata.num_row_groups):
        yield parquet.read_row_group(group, columns=["index"]).column(0).to_numpy().astype(np.int32, copy=False)


def read_indices_from(folder: Path, start: int) -> np.ndarray:
    """Indices start..end, (n - start,) int32, reading only the row groups that hold them."""
    parquet = pq.ParquetFile(folder / INDICES_FILE, pre_buffer=False)
    pieces, first = [], 0
    for group in range(parquet.metadata.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        if first + rows > start:
            column = parquet.read_row_group(group, columns=["index"]).column(0).to_numpy()
            pieces.append(column[max(start - first, 0) :].astype(np.int32, copy=False))
        first += rows
    return np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int32)


def read_indices(folder: Path) -> np.ndarray:
    """(n,) int32."""
    column = pq.ParquetFile(folder / INDICES_FILE).read(columns=["index"]).column("index")
    return column.to_numpy().astype(np.int32, copy=False)

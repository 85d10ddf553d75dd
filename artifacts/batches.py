"""The batches artifact: the training token stream, from which the reader gathers each batch by the plan in
the summary (the spec, the seed and the epoch decide it); materialized, Parquet shards of whole batches.

tokens.npy              int32, the training part of the index sequence: np.load(path, mmap_mode="r")
batches-NNNNN.parquet   (materialized) epoch: int32, batch: int32, row: int32, start: int64,
                        x: fixed_size_list<int32>[num_steps], y: fixed_size_list<int32>[num_steps]
                        (rows in (epoch, batch, row) order, one row group per batch)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from artifacts.manifest import Summary
from artifacts.parquet import BackgroundWriter, with_metadata
from tasks.batches import BatchesParams, epoch_size

BATCHES_OPTIONS: dict[str, Any] = {"compression": "lz4", "use_dictionary": False}


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


TOKENS_FILE = "tokens.npy"


def write_tokens(path: Path, chunks: Iterable[np.ndarray], count: int) -> None:
    """The first `count` tokens of `chunks` as a .npy file, written as they come (memory holds a chunk)."""
    written = 0
    with path.open("wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<i4", "fortran_order": False, "shape": (count,)})
        for chunk in chunks:
            piece = np.ascontiguousarray(chunk[: count - written], dtype="<i4")  # (<= rows,)
            fh.write(piece.tobytes())
            written += len(piece)
            if written == count:
                break
    if written != count:
        raise ValueError(f"{path}: expected {count} tokens, the indices held {written}")


def read_tokens(folder: Path) -> np.ndarray:
    """The token stream, memory-mapped: (tokens,) int32, read-only; pages come from the file as needed."""
    return np.load(folder / TOKENS_FILE, mmap_mode="r")


def row_bytes(num_steps: int) -> int:
    """A row's size before compression, a bound on what it takes on disk: x and y, then epoch, batch, row, start."""
    return 2 * 4 * num_steps + 4 + 4 + 4 + 8


def shard_file(number: int) -> str:
    return f"batches-{number:05d}.parquet"


class Shard(Summary):
    """Whole batches `first` .. `last` ([epoch, batch]), the `first_batch`-th stored batch onwards."""

    file: str
    first: list[int]
    last: list[int]
    first_batch: int
    batches: int
    rows: int


class BatchesSummary(Summary):
    spec: BatchesParams
    vocab_key: str
    vocab_size: int
    indices_key: str
    train_indices: int  # the leading indices batches read; the rest is held out
    val_indices: int
    epochs: int
    epochs_stored: int  # planned (one when every epoch is the same), and written when materialized
    same_every_epoch: bool
    # Per planned epoch, listed by materialized artifacts (and every one made before the list was dropped); the
    # others count an epoch's batches when asked (`batches_in`), so that a manifest's size is not O(epochs).
    batches_per_epoch: list[int] = []
    rows: int  # of the planned epochs
    tokens: int
    shards: list[Shard]  # materialized only

    def batches_in(self, stored: int) -> int:
        """Batches of planned epoch `stored`."""
        if self.batches_per_epoch:
            return self.batches_per_epoch[stored]
        return epoch_size(self.train_indices, self.spec, stored)[0]

    def first_batch_of(self, stored: int) -> int:
        """The number, among every stored batch, of planned epoch `stored`'s first (materialized: listed)."""
        return sum(self.batches_per_epoch[:stored])

    @property
    def materialized(self) -> bool:
        """Rows in shards, else the token stream and the plan. By the shards, not the spec: artifacts made
        before the token stream hold only shards, and their spec no `materialize`."""
        return bool(self.shards)


@dataclass(frozen=True)
class ShardWritten:
    """Progress of the batches stage: `number` shards of `total` written."""

    number: int
    total: int


class BatchShardWriter:
    """One batches shard: each `write` call holds one whole batch and becomes one row group."""

    def __init__(self, path: Path, num_steps: int, metadata: dict[str, Any]):
        self.schema = with_metadata(batches_schema(num_steps), metadata)
        self._writer = BackgroundWriter(path, self.schema, BATCHES_OPTIONS)

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

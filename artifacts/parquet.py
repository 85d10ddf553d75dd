"""What every Parquet artifact shares: fixed writer options, the `charflow` metadata entry, and a writer that
overlaps encoding with the producer.

Each file carries a `charflow` JSON entry in its schema metadata (stage, inputs, vocabulary key...).
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from artifacts.manifest import remember_digest

METADATA_KEY = b"charflow"


INT32 = pa.int32()
_DTYPES = {INT32: np.int32, pa.int64(): np.int64}


# Not `pa.array` in these: its first call imports pandas, 0.2 s of a stage that never needs it.
def numpy_array(values: np.ndarray, type_: pa.DataType = INT32) -> pa.Array:
    """A numpy array as an Arrow int32 or int64 array, without a copy when it has that dtype already."""
    values = np.ascontiguousarray(values, dtype=_DTYPES[type_])
    return pa.Array.from_buffers(type_, len(values), [None, pa.py_buffer(values)])


def bool_array(values: np.ndarray) -> pa.BooleanArray:
    bits = np.packbits(np.asarray(values, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])


def string_array(strings: list[str]) -> pa.StringArray:
    data = [string.encode("utf-8") for string in strings]
    offsets = np.zeros(len(data) + 1, dtype=np.int32)
    np.cumsum([len(item) for item in data], out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(data), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))])


def with_metadata(schema: pa.Schema, metadata: dict[str, Any]) -> pa.Schema:
    return schema.with_metadata({METADATA_KEY: json.dumps(metadata, ensure_ascii=False, sort_keys=True)})


def read_metadata(path: Path) -> dict[str, Any]:
    raw = pq.read_schema(path).metadata or {}
    return json.loads(raw[METADATA_KEY]) if METADATA_KEY in raw else {}


def write_rows(
    path: Path, schema: pa.Schema, rows: list[dict[str, Any]], metadata: dict[str, Any], options: dict[str, Any]
) -> None:
    """A small table from row dicts (metrics, samples), columns as the schema says."""
    table = pa.Table.from_pylist(rows, schema=with_metadata(schema, metadata))
    pq.write_table(table, path, write_statistics=True, **options)


class BackgroundWriter:
    """A ParquetWriter fed through a short queue: encoding and compression (which release the GIL)
    overlap with the Python work that produces the next table."""

    def __init__(self, path: Path, schema: pa.Schema, options: dict[str, Any]):
        self.path = path
        self._writer = pq.ParquetWriter(path, schema, **{"write_statistics": True, **options})
        self._queue: queue.Queue[tuple[pa.Table, int | None] | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._follower = HashFollower(path)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._writer.write_table(*item)
                except BaseException as exc:  # surfaced in write() or close()
                    self._error = exc

    def write(self, table: pa.Table, row_group_size: int | None = None) -> None:
        """Queue the table; it is one row group unless `row_group_size` cuts it (pyarrow's default: 1 Mi rows)."""
        if self._error is not None:
            raise self._error
        self._queue.put((table, row_group_size))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        try:
            self._writer.close()
        finally:  # a full disk fails the close: the follower must still let go of the file
            hashed = self._follower.finish()
        if self._error is not None:
            raise self._error
        if hashed is not None:
            remember_digest(self.path, *hashed)


class HashFollower:
    """The sha256 of a file being appended to, computed by a thread that reads behind the writer (hashing
    releases the GIL): the file's digest is ready when it is closed, without a second pass over it."""

    def __init__(self, path: Path):
        self._path = path
        self._digest = hashlib.sha256()
        self._size = 0
        self._failed = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            with self._path.open("rb") as fh:
                while True:
                    closed = self._done.is_set()  # read before the final pass: nothing is written after it
                    while block := fh.read(1 << 22):
                        self._digest.update(block)
                        self._size += len(block)
                    if closed:
                        return
                    self._done.wait(0.05)
        except OSError:
            self._failed = True  # no digest: the manifest hashes the file itself

    def finish(self) -> tuple[str, int] | None:
        """Call once the file is closed: the digest of all of it and the bytes it covers, or None."""
        self._done.set()
        self._thread.join()
        return None if self._failed else (self._digest.hexdigest(), self._size)

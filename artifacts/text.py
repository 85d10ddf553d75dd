"""The text artifact (ingest and clean): `text.parquet`, the text as chunks in order.

text.parquet   chunk: int32, text: large_string   (the text is the chunks joined in order)
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
from tasks.ingest import utf8_array
from tasks.streams import prefetch

TEXT_FILE = "text.parquet"
TEXT_SCHEMA = pa.schema([("chunk", pa.int32()), ("text", pa.large_string())])
# Characters per row: small enough to stream, large enough to be fast.
TEXT_CHUNK_CHARS = 1 << 20
WRITE_BYTES = 8 << 20  # text handed to the writer thread at once
# Uncompressed: zstd or lz4 cost 0.25 s per 100 MB, a quarter of the whole pipeline's time. No dictionary
# and no statistics for the text: each row is one long unique string, and trying both cost 5 s per GB.
TEXT_OPTIONS: dict[str, Any] = {"compression": "none", "use_dictionary": False, "write_statistics": ["chunk"]}


class TextSummary(Summary):
    chars: int


class Member(Summary):
    name: str
    bytes: int


class IngestSummary(TextSummary):
    """The source behind the text: where it came from, its bytes' digest and size, the members read."""

    source: str
    sha256: str
    size: int
    members: list[Member]


def write_text(folder: Path, chunks: Iterable[str], metadata: dict[str, Any]) -> int:
    """Write text given as chunks (re-cut to at most TEXT_CHUNK_CHARS); return its length in characters."""
    total = 0

    def rows() -> Iterator[pa.LargeStringArray]:
        nonlocal total
        for chunk in chunks:
            for start in range(0, len(chunk), TEXT_CHUNK_CHARS):
                piece = chunk[start : start + TEXT_CHUNK_CHARS]
                total += len(piece)
                yield utf8_array(piece.encode("utf-8"))

    _write_rows(folder, rows(), metadata)
    return total


def write_text_utf8(folder: Path, chunks: Iterable[bytes | np.ndarray], metadata: dict[str, Any]) -> int:
    """Write text given as valid UTF-8 chunks (bytes or uint8 arrays), one row each; return its length in
    characters."""
    total = 0

    def rows() -> Iterator[pa.LargeStringArray]:
        nonlocal total
        for data in chunks:
            total += utf8_chars(data)
            yield utf8_array(data)

    _write_rows(folder, rows(), metadata)
    return total


def _write_rows(folder: Path, rows: Iterator[pa.LargeStringArray], metadata: dict[str, Any]) -> None:
    """One row group per row, handed to the writer thread WRITE_BYTES at a time: it takes the GIL once per
    table, and each take waits for the producer's work (decoding, cleaning) to let go of it."""
    writer = BackgroundWriter(folder / TEXT_FILE, with_metadata(TEXT_SCHEMA, metadata), TEXT_OPTIONS)
    first, batch, held = 0, [], 0
    try:
        for text in rows:
            batch.append(text)
            held += text.nbytes
            if held >= WRITE_BYTES:
                writer.write(_table(first, batch), row_group_size=1)
                first, batch, held = first + len(batch), [], 0
        if batch:
            writer.write(_table(first, batch), row_group_size=1)
    finally:
        writer.close()


def _table(first: int, texts: list[pa.LargeStringArray]) -> pa.Table:
    chunk = numpy_array(np.arange(first, first + len(texts)))
    return pa.Table.from_arrays([chunk, pa.chunked_array(texts, pa.large_string())], schema=TEXT_SCHEMA)


def utf8_chars(data: bytes | np.ndarray) -> int:
    """Characters in valid UTF-8: the bytes that do not continue a character (ten times Arrow's utf8_length)."""
    return int(np.count_nonzero(np.frombuffer(data, dtype=np.int8) >= -0x40))  # continuation bytes: 0x80-0xBF


def _text_batches(folder: Path, groups: range | None = None) -> Iterator[pa.Array]:
    # pre_buffer=False: read row by row; pyarrow's default reads ahead the whole file.
    parquet = pq.ParquetFile(folder / TEXT_FILE, pre_buffer=False)
    batches = parquet.iter_batches(batch_size=1, columns=["text"], row_groups=groups)
    return prefetch(batch.column(0) for batch in batches)


def iter_text(folder: Path, groups: range | None = None) -> Iterator[str]:
    """The text's chunks in order, one row at a time; of the row groups `groups` only, if given."""
    for column in _text_batches(folder, groups):
        yield from column.to_pylist()


def group_bytes(folder: Path) -> list[int]:
    """The size of each row group of the text, in order."""
    metadata = pq.ParquetFile(folder / TEXT_FILE).metadata
    return [metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups)]


def iter_text_arrays(folder: Path, groups: range | None = None) -> Iterator[np.ndarray]:
    """The text's chunks as UTF-8, each a (bytes,) uint8 view of the column as read: no decoding, no copy."""
    for column in _text_batches(folder, groups):
        offsets = np.frombuffer(column.buffers()[1], dtype=np.int64)[column.offset : column.offset + len(column) + 1]
        data = np.frombuffer(column.buffers()[2], dtype=np.uint8)
        for start, end in zip(offsets[:-1], offsets[1:], strict=True):
            yield data[start:end]


def iter_text_utf8(folder: Path) -> Iterator[bytes]:
    """The text's chunks as UTF-8 bytes, without decoding them."""
    for chunk in iter_text_arrays(folder):
        yield chunk.tobytes()


def read_text(folder: Path) -> str:
    return "".join(iter_text(folder))

"""Parquet schemas of each artifact kind, with their writers and readers.

text     text.parquet     chunk: int32, text: large_string   (the text is the chunks joined in order)
vocab    vocab.parquet    index: int32, token: string, count: int64, reserved: bool
indices  indices.parquet  index: int32                       (one row per character)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TEXT_FILE = "text.parquet"
VOCAB_FILE = "vocab.parquet"
INDICES_FILE = "indices.parquet"

TEXT_SCHEMA = pa.schema([("chunk", pa.int32()), ("text", pa.large_string())])
VOCAB_SCHEMA = pa.schema(
    [("index", pa.int32()), ("token", pa.string()), ("count", pa.int64()), ("reserved", pa.bool_())]
)
INDICES_SCHEMA = pa.schema([("index", pa.int32())])

# Characters per text row and indices per row group: small enough to stream, large enough to be fast.
TEXT_CHUNK_CHARS = 1 << 20
INDICES_ROW_GROUP = 1 << 20

METADATA_KEY = b"charflow"


def _with_metadata(schema: pa.Schema, metadata: dict[str, Any]) -> pa.Schema:
    return schema.with_metadata({METADATA_KEY: json.dumps(metadata, ensure_ascii=False, sort_keys=True)})


def read_metadata(path: Path) -> dict[str, Any]:
    raw = pq.read_schema(path).metadata or {}
    return json.loads(raw[METADATA_KEY]) if METADATA_KEY in raw else {}


def _write(table: pa.Table, path: Path, row_group_size: int | None = None) -> None:
    # Fixed writer options so the same table gives the same bytes.
    pq.write_table(table, path, row_group_size=row_group_size, compression="zstd", write_statistics=True)


def write_text(folder: Path, text: str, metadata: dict[str, Any]) -> None:
    chunks = [text[i : i + TEXT_CHUNK_CHARS] for i in range(0, len(text), TEXT_CHUNK_CHARS)]
    table = pa.table(
        {"chunk": pa.array(range(len(chunks)), pa.int32()), "text": pa.array(chunks, pa.large_string())},
        schema=_with_metadata(TEXT_SCHEMA, metadata),
    )
    _write(table, folder / TEXT_FILE, row_group_size=8)


def read_text(folder: Path) -> str:
    table = pq.read_table(folder / TEXT_FILE, columns=["text"])
    return "".join(table.column("text").to_pylist())


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
    _write(table, folder / VOCAB_FILE)


def read_vocab_table(folder: Path) -> pa.Table:
    return pq.read_table(folder / VOCAB_FILE)


def write_indices(folder: Path, indices: np.ndarray, metadata: dict[str, Any]) -> None:
    table = pa.table({"index": pa.array(indices, pa.int32())}, schema=_with_metadata(INDICES_SCHEMA, metadata))
    _write(table, folder / INDICES_FILE, row_group_size=INDICES_ROW_GROUP)


def read_indices(folder: Path) -> np.ndarray:
    column = pq.read_table(folder / INDICES_FILE, columns=["index"]).column("index")
    return column.to_numpy().astype(np.int32, copy=False)

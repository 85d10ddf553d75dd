"""The vocabulary artifact: `vocab.parquet` (and `frequency.png`, drawn by `artifacts.vocab_chart`).

vocab.parquet   index: int32, token: string, count: int64, reserved: bool
frequency.png   the most frequent symbols, log scale
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from artifacts.manifest import Summary
from artifacts.parquet import bool_array, numpy_array, string_array, with_metadata
from tasks.errors import CharflowError
from tasks.vocab import Vocab

VOCAB_FILE = "vocab.parquet"
FREQUENCY_FILE = "frequency.png"
VOCAB_SCHEMA = pa.schema(
    [("index", pa.int32()), ("token", pa.string()), ("count", pa.int64()), ("reserved", pa.bool_())]
)
VOCAB_OPTIONS: dict[str, Any] = {"compression": "zstd"}


class VocabMismatch(CharflowError, ValueError):
    """Artifacts made with different vocabularies."""


class VocabSummary(Summary):
    size: int
    reserved: int
    policy: dict[str, Any]


def write_vocab(folder: Path, vocab: Vocab, metadata: dict[str, Any]) -> None:
    table = pa.table(
        {
            "index": numpy_array(np.arange(len(vocab))),
            "token": string_array(vocab.tokens),
            "count": numpy_array(vocab.counts, pa.int64()),
            "reserved": bool_array(np.arange(len(vocab)) < vocab.reserved),
        },
        schema=with_metadata(VOCAB_SCHEMA, metadata),
    )
    pq.write_table(table, folder / VOCAB_FILE, write_statistics=True, **VOCAB_OPTIONS)


def read_vocab(folder: Path) -> Vocab:
    # Python lists, not to_numpy: a few thousand values, and to_numpy imports pandas (0.3 s of encode).
    table = pq.ParquetFile(folder / VOCAB_FILE).read(columns=["token", "count", "reserved"])
    return Vocab(
        tokens=table.column("token").to_pylist(),
        counts=np.array(table.column("count").to_pylist(), dtype=np.int64),
        reserved=sum(table.column("reserved").to_pylist()),
    )


def read_tokens(folder: Path) -> list[str]:
    return pq.ParquetFile(folder / VOCAB_FILE).read(columns=["token"]).column("token").to_pylist()

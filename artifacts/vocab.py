"""The vocabulary artifact: `vocab.parquet` and its frequency chart.

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
from artifacts.parquet import with_metadata
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
            "index": pa.array(np.arange(len(vocab), dtype=np.int32)),
            "token": pa.array(vocab.tokens, pa.string()),
            "count": pa.array(np.asarray(vocab.counts, dtype=np.int64)),
            "reserved": pa.array(np.arange(len(vocab)) < vocab.reserved),
        },
        schema=with_metadata(VOCAB_SCHEMA, metadata),
    )
    pq.write_table(table, folder / VOCAB_FILE, write_statistics=True, **VOCAB_OPTIONS)


def read_vocab(folder: Path) -> Vocab:
    table = pq.read_table(folder / VOCAB_FILE)
    return Vocab(
        tokens=table.column("token").to_pylist(),
        counts=table.column("count").to_numpy(),
        reserved=int(np.count_nonzero(table.column("reserved").to_numpy())),
    )


def read_tokens(folder: Path) -> list[str]:
    return pq.read_table(folder / VOCAB_FILE, columns=["token"]).column("token").to_pylist()


def frequency_chart(vocab: Vocab, path: Path, top: int = 30) -> None:
    """The most frequent symbols with their counts, log scale; whitespace is drawn quoted, as ' '."""
    from artifacts.charts import cjk_font, new_figure, save_png

    tokens, counts = vocab.tokens, vocab.counts.tolist()
    order = sorted(range(len(tokens)), key=lambda i: (-counts[i], i))[:top]
    fig, ax = new_figure(10, 4)
    ax.bar(range(len(order)), [counts[i] for i in order], color="#4C72B0")
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(
        [tokens[i] if tokens[i].strip() else repr(tokens[i]) for i in order], fontproperties=cjk_font(), fontsize=12
    )
    ax.set(yscale="log", ylabel="count", title=f"the {len(order)} most frequent of {len(tokens):,} symbols")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    # Fixed margins: tight_layout measured every label again and took most of the chart's time.
    fig.subplots_adjust(left=0.07, right=0.99, top=0.91, bottom=0.1)
    save_png(fig, path)

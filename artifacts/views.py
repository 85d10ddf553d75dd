"""What a person wants to see of each artifact kind (`charflow inspect show`, the Prefect UI). Presentation
only: no stage's key depends on this module."""

from __future__ import annotations

from typing import Any

import pyarrow.parquet as pq

from artifacts.batches import BatchesSummary
from artifacts.indices import INDICES_FILE, EncodeSummary
from artifacts.model import METRICS_FILE, SAMPLES_FILE
from artifacts.store import Entry, Store
from artifacts.text import iter_text
from artifacts.vocab import VOCAB_FILE, read_tokens

LIMIT = 10


def _tokens(store: Store, vocab_key: str) -> list[str] | None:
    folder = store.folder("vocab", vocab_key)
    return read_tokens(folder) if (folder / VOCAB_FILE).is_file() else None


def _decode(tokens: list[str] | None, ids: list[int]) -> str | None:
    return None if tokens is None else "".join(tokens[i] for i in ids)


def text(store: Store, entry: Entry) -> dict[str, Any]:
    return {"first_characters": next(iter_text(entry.path), "")[:200]}


def vocab(store: Store, entry: Entry) -> dict[str, Any]:
    table = pq.read_table(entry.path / VOCAB_FILE).to_pylist()
    top = sorted(table, key=lambda r: (-r["count"], r["index"]))[:LIMIT]
    return {"size": len(table), "most_frequent": [{k: r[k] for k in ("index", "token", "count")} for r in top]}


def indices(store: Store, entry: Entry) -> dict[str, Any]:
    ids = pq.ParquetFile(entry.path / INDICES_FILE).read_row_group(0).column("index").to_pylist()[:60]
    return {"first_indices": ids, "decoded": _decode(_tokens(store, EncodeSummary.of(entry.manifest).vocab_key), ids)}


def batches(store: Store, entry: Entry) -> dict[str, Any]:
    summary = BatchesSummary.of(entry.manifest)
    rows = pq.ParquetFile(entry.path / summary.shards[0].file).read_row_group(0).to_pylist()[:3]
    tokens = _tokens(store, summary.vocab_key)
    return {
        "first_rows": [
            {
                **{k: r[k] for k in ("epoch", "batch", "row", "start")},
                "x": _decode(tokens, r["x"]) or r["x"],
                "y": _decode(tokens, r["y"]) or r["y"],
            }
            for r in rows
        ]
    }


def model(store: Store, entry: Entry) -> dict[str, Any]:
    metrics = pq.read_table(entry.path / METRICS_FILE).to_pylist()
    step = max(1, len(metrics) // LIMIT)
    shown = [m for m in metrics if m["epoch"] % step == 0 or m is metrics[-1]]
    return {"metrics": shown, "samples": pq.read_table(entry.path / SAMPLES_FILE).to_pylist()}

"""What a person wants to see of each artifact kind (`charflow inspect show`, the Prefect UI). Presentation
only: no stage's key depends on this module."""

from __future__ import annotations

from typing import Any

import pyarrow.parquet as pq

from artifacts.batches import BatchesSummary, read_tokens
from artifacts.evaluation import EVALUATION_FILE
from artifacts.indices import INDICES_FILE, EncodeSummary
from artifacts.model import METRICS_FILE, SAMPLES_FILE
from artifacts.store import Entry, Store
from artifacts.text import iter_text
from artifacts.vocab import VOCAB_FILE
from artifacts.vocab import read_tokens as read_vocab_tokens
from tasks.batches import plan_epoch
from tasks.errors import CharflowError
from tasks.samplers import window_view, windows

LIMIT = 10


class NoSuchBatch(CharflowError, IndexError):
    """`--batch E B` names a batch the artifact does not have."""


def _tokens(store: Store, vocab_key: str) -> list[str] | None:
    folder = store.folder("vocab", vocab_key)
    return read_vocab_tokens(folder) if (folder / VOCAB_FILE).is_file() else None


def _decode(tokens: list[str] | None, ids: list[int]) -> str | None:
    return None if tokens is None else "".join(tokens[i] for i in ids)


def text(store: Store, entry: Entry) -> dict[str, Any]:
    return {"first_characters": next(iter_text(entry.path), "")[:200]}


def vocab(store: Store, entry: Entry) -> dict[str, Any]:
    table = pq.ParquetFile(entry.path / VOCAB_FILE).read().to_pylist()
    top = sorted(table, key=lambda r: (-r["count"], r["index"]))[:LIMIT]
    return {"size": len(table), "most_frequent": [{k: r[k] for k in ("index", "token", "count")} for r in top]}


def indices(store: Store, entry: Entry) -> dict[str, Any]:
    ids = pq.ParquetFile(entry.path / INDICES_FILE).read_row_group(0).column("index").to_pylist()[:60]
    return {"first_indices": ids, "decoded": _decode(_tokens(store, EncodeSummary.of(entry.manifest).vocab_key), ids)}


def batch_rows(entry: Entry, epoch: int = 0, batch: int = 0) -> list[dict[str, Any]]:
    """The rows of one batch: read from its shard when materialized, else gathered from the token stream by
    the plan, as the reader does."""
    summary = BatchesSummary.of(entry.manifest)
    stored = 0 if summary.same_every_epoch else epoch
    if not 0 <= epoch < summary.epochs:
        raise NoSuchBatch(f"batches {entry.key[:12]} has epochs 0 to {summary.epochs - 1}; pick one of them")
    if not 0 <= batch < (count := summary.batches_in(stored)):
        raise NoSuchBatch(f"epoch {epoch} of batches {entry.key[:12]} has batches 0 to {count - 1}; pick one of them")
    if summary.materialized:
        offset = summary.first_batch_of(stored) + batch
        shard = next(s for s in summary.shards if s.first_batch <= offset < s.first_batch + s.batches)
        rows = pq.ParquetFile(entry.path / shard.file).read_row_group(offset - shard.first_batch).to_pylist()
        return [{**r, "epoch": epoch} for r in rows]
    starts = plan_epoch(summary.train_indices, summary.spec, stored).starts_of(batch)
    x, y = windows(window_view(read_tokens(entry.path), summary.spec.num_steps), starts)
    return [
        {"epoch": epoch, "batch": batch, "row": row, "start": int(start), "x": x[row].tolist(), "y": y[row].tolist()}
        for row, start in enumerate(starts)
    ]


def batches(store: Store, entry: Entry, epoch: int = 0, batch: int = 0) -> dict[str, Any]:
    summary = BatchesSummary.of(entry.manifest)
    rows = batch_rows(entry, epoch, batch)[:3]
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
    metrics = pq.ParquetFile(entry.path / METRICS_FILE).read().to_pylist()
    step = max(1, len(metrics) // LIMIT)
    shown = [m for m in metrics if m["epoch"] % step == 0 or m is metrics[-1]]
    return {"metrics": shown, "samples": pq.ParquetFile(entry.path / SAMPLES_FILE).read().to_pylist()}


def evaluation(store: Store, entry: Entry) -> dict[str, Any]:
    return pq.ParquetFile(entry.path / EVALUATION_FILE).read().to_pylist()[0]

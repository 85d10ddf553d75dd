"""Inspection of the store: list, show, lineage and diff (verify and gc are in `artifacts.upkeep`)."""

from __future__ import annotations

import json
from typing import Any

import pyarrow.parquet as pq

from artifacts.catalog import Catalog
from artifacts.leaderboard import metric_deltas, model_run
from artifacts.manifest import read_manifest
from artifacts.stages import STAGES
from artifacts.store import ArtifactRef, Entry, Store
from artifacts.vocab import VOCAB_FILE


def entry(ref: ArtifactRef) -> Entry:
    return Entry(ref.path, read_manifest(ref.path))


def listing(store: Store, catalog: Catalog) -> dict[str, Any]:
    corpora: dict[str, list[dict[str, Any]]] = {}
    for version in catalog.versions():
        corpora.setdefault(version.corpus, []).append(
            version.model_dump(include={"version", "sha256", "size", "source", "created"})
        )
    artifacts = [
        {"stage": e.stage, "key": e.key, "created": e.manifest.created, "rows": e.rows, "size": e.size}
        for e in store.entries(STAGES)
    ]
    return {"corpora": corpora, "artifacts": artifacts}


def show(store: Store, found: Entry, batch: tuple[int, int] | None = None) -> dict[str, Any]:
    """The manifest, the Parquet schemas and a decoded view (of batch (epoch, batch) of a batches artifact)."""
    parquet = {
        f.name: str(pq.read_schema(found.path / f.name).remove_metadata())
        for f in found.manifest.files
        if f.name.endswith(".parquet")
    }
    return {
        "path": str(found.path),
        "manifest": found.manifest.model_dump(mode="json"),
        "schemas": parquet,
        "view": STAGES[found.stage].view(store, found, *batch) if batch else STAGES[found.stage].view(store, found),
    }


def lineage(store: Store, found: Entry) -> list[dict[str, Any]]:
    """The artifact and every input behind it, down to the source's bytes."""
    by_key = {e.key: e for e in store.entries(STAGES)}
    chain, todo, seen = [], [found], set()
    while todo:
        current = todo.pop(0)
        if current.key in seen:
            continue
        seen.add(current.key)
        manifest = current.manifest
        chain.append({"stage": current.stage, "key": current.key, "params": manifest.params, "inputs": manifest.inputs})
        for name, key in manifest.inputs.items():
            if key in by_key:
                todo.append(by_key[key])
            else:
                source = {"input": name, "source": manifest.summary.get("source")}
                chain.append({"stage": "source", "key": key, "params": source, "inputs": {}})
    return chain


def _changed(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[Any]]:
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _token_counts(found: Entry) -> dict[str, int]:
    table = pq.ParquetFile(found.path / VOCAB_FILE).read(columns=["token", "count"])
    return dict(zip(table.column("token").to_pylist(), table.column("count").to_pylist(), strict=True))


def diff(a: Entry, b: Entry, limit: int = 10, catalog: Catalog | None = None) -> dict[str, Any]:
    """Parameters and inputs that differ; symbols added, removed and recounted (two vocabularies); each figure,
    a, b and b - a (two models: their runs as recorded in `catalog`, else as their manifests make them)."""
    out: dict[str, Any] = {
        "stages": [a.stage, b.stage],
        "params": _changed(a.manifest.params, b.manifest.params),
        "inputs": _changed(a.manifest.inputs, b.manifest.inputs),
    }
    if a.stage == b.stage == "vocab":
        before, after = _token_counts(a), _token_counts(b)
        changes = sorted(
            ((t, after.get(t, 0) - before.get(t, 0)) for t in set(before) | set(after)),
            key=lambda tc: (-abs(tc[1]), tc[0]),
        )
        out["vocab"] = {
            "added": sorted(set(after) - set(before)),
            "removed": sorted(set(before) - set(after)),
            "largest_count_changes": [{"token": t, "change": c} for t, c in changes[:limit] if c],
        }
    if a.stage == b.stage == "train":
        entries = catalog.entries() if catalog is not None else []
        out["metrics"] = metric_deltas(model_run(entries, a), model_run(entries, b))
    return out


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)

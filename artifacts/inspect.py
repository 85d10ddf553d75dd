"""Inspection of the store: list, resolve references, show, lineage, diff, verify and garbage-collect."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from artifacts import schemas
from artifacts.catalog import Catalog
from artifacts.manifest import MANIFEST_NAME, Manifest, problems, read_manifest

STAGES = ("ingest", "clean", "vocab", "encode", "batches", "train")


class RefError(LookupError):
    """A reference that names no artifact, or more than one."""


@dataclass(frozen=True)
class Entry:
    stage: str
    key: str
    path: Path
    manifest: Manifest

    @property
    def rows(self) -> int:
        return sum(f.rows or 0 for f in self.manifest.files)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.manifest.files)


def entries(root: Path) -> list[Entry]:
    """Every artifact with a readable manifest, newest first (files are not re-hashed: see `verify`)."""
    found = []
    for stage in STAGES:
        for folder in sorted((root / stage).glob("*")) if (root / stage).is_dir() else []:
            try:
                manifest = read_manifest(folder)
            except (OSError, ValueError):
                continue
            found.append(Entry(stage, manifest.key, folder, manifest))
    return sorted(found, key=lambda e: e.manifest.created, reverse=True)


def _version_outputs(catalog: Catalog, corpus: str, version: str) -> tuple[int, list[dict[str, str]]]:
    """The version's number and every run's outputs recorded for it, oldest first."""
    versions = sorted(v.version for v in catalog.versions(corpus))
    if not versions:
        known = sorted({v.corpus for v in catalog.versions()})
        raise RefError(f"no corpus {corpus!r} in the catalog; known corpora: {', '.join(known) or 'none'}")
    number = versions[-1] if version == "latest" else int(version.lstrip("v"))
    if number not in versions:
        raise RefError(f"{corpus} has no version {version}; versions: {', '.join(f'v{v}' for v in versions)}")
    runs = [
        entry["outputs"]
        for entry in catalog.entries()
        if entry.get("event") == "outputs" and entry["corpus"] == corpus and entry["version"] == number
    ]
    return number, runs


def resolve(root: Path, ref: str) -> Entry:
    """A key, a unique key prefix, an artifact folder, or `corpus@version/stage` (version: a number or latest)."""
    everything = entries(root)
    if "@" in ref:
        corpus, _, rest = ref.partition("@")
        version, _, stage = rest.partition("/")
        number, runs = _version_outputs(Catalog(root), corpus, version or "latest")
        outputs = {name: key for run in runs for name, key in run.items()}  # the latest run's key per stage
        if stage not in outputs:
            have = ", ".join(s for s in STAGES if s in outputs) or "none"
            raise RefError(f"{corpus}@v{number} has no {stage or '(no stage given)'} artifact; it has: {have}")
        ref = outputs[stage]
    elif Path(ref).is_dir() and (Path(ref) / MANIFEST_NAME).is_file():
        ref = read_manifest(Path(ref)).key
    matches = [e for e in everything if e.key.startswith(ref)] if ref else []
    if len(matches) == 1:
        return matches[0]
    shown = ", ".join(f"{e.stage}/{e.key[:12]}" for e in (matches or everything)[:12]) or "none"
    what = "is ambiguous" if matches else "names no artifact"
    raise RefError(f"{ref!r} {what}; candidates: {shown}. Give a longer key prefix or corpus@version/stage")


def listing(root: Path) -> dict[str, Any]:
    catalog = Catalog(root)
    corpora: dict[str, list[dict[str, Any]]] = {}
    for version in catalog.versions():
        corpora.setdefault(version.corpus, []).append(
            {
                "version": version.version,
                "sha256": version.sha256,
                "size": version.size,
                "source": version.source,
                "created": version.created,
            }
        )
    artifacts = [
        {"stage": e.stage, "key": e.key, "created": e.manifest.created, "rows": e.rows, "size": e.size}
        for e in entries(root)
    ]
    return {"corpora": corpora, "artifacts": artifacts}


def _vocab_tokens(root: Path, key: str | None) -> list[str] | None:
    folder = root / "vocab" / (key or "")
    if not key or not (folder / schemas.VOCAB_FILE).is_file():
        return None
    return pq.read_table(folder / schemas.VOCAB_FILE, columns=["token"]).column("token").to_pylist()


def _decode(tokens: list[str] | None, ids: list[int]) -> str | None:
    return None if tokens is None else "".join(tokens[i] for i in ids)


def decoded_view(root: Path, entry: Entry, limit: int = 10) -> dict[str, Any]:
    """What a person wants to see of each kind of artifact."""
    folder, summary = entry.path, entry.manifest.summary
    if entry.stage in ("ingest", "clean"):
        text = next(schemas.iter_text(folder), "")
        return {"first_characters": text[:200]}
    if entry.stage == "vocab":
        table = pq.read_table(folder / schemas.VOCAB_FILE).to_pylist()
        top = sorted(table, key=lambda r: (-r["count"], r["index"]))[:limit]
        return {"size": len(table), "most_frequent": [{k: r[k] for k in ("index", "token", "count")} for r in top]}
    if entry.stage == "encode":
        ids = pq.ParquetFile(folder / schemas.INDICES_FILE).read_row_group(0).column("index").to_pylist()[:60]
        return {"first_indices": ids, "decoded": _decode(_vocab_tokens(root, summary.get("vocab_key")), ids)}
    if entry.stage == "batches":
        first = summary["shards"][0]["file"]
        rows = pq.ParquetFile(folder / first).read_row_group(0).to_pylist()[:3]
        tokens = _vocab_tokens(root, summary.get("vocab_key"))
        return {
            "first_rows": [
                {
                    "epoch": r["epoch"],
                    "batch": r["batch"],
                    "row": r["row"],
                    "start": r["start"],
                    "x": _decode(tokens, r["x"]) or r["x"],
                    "y": _decode(tokens, r["y"]) or r["y"],
                }
                for r in rows
            ]
        }
    if entry.stage == "train":
        metrics = pq.read_table(folder / schemas.METRICS_FILE).to_pylist()
        step = max(1, len(metrics) // limit)
        shown = [m for m in metrics if m["epoch"] % step == 0 or m is metrics[-1]]
        return {"metrics": shown, "samples": pq.read_table(folder / schemas.SAMPLES_FILE).to_pylist()}
    return {}


def show(root: Path, entry: Entry) -> dict[str, Any]:
    parquet = {
        f.name: str(pq.read_schema(entry.path / f.name).remove_metadata())
        for f in entry.manifest.files
        if f.name.endswith(".parquet")
    }
    return {
        "path": str(entry.path),
        "manifest": entry.manifest.model_dump(mode="json"),
        "schemas": parquet,
        "view": decoded_view(root, entry),
    }


def lineage(root: Path, entry: Entry) -> list[dict[str, Any]]:
    """The artifact and every input behind it, down to the source's bytes."""
    by_key = {e.key: e for e in entries(root)}
    chain, todo, seen = [], [entry], set()
    while todo:
        current = todo.pop(0)
        if current.key in seen:
            continue
        seen.add(current.key)
        chain.append(
            {
                "stage": current.stage,
                "key": current.key,
                "params": current.manifest.params,
                "inputs": current.manifest.inputs,
            }
        )
        for name, key in current.manifest.inputs.items():
            if key in by_key:
                todo.append(by_key[key])
            else:
                chain.append(
                    {
                        "stage": "source",
                        "key": key,
                        "params": {"input": name, "source": current.manifest.summary.get("source")},
                        "inputs": {},
                    }
                )
    return chain


def diff(root: Path, a: Entry, b: Entry, limit: int = 10) -> dict[str, Any]:
    keys = sorted(set(a.manifest.params) | set(b.manifest.params))
    params = {
        k: [a.manifest.params.get(k), b.manifest.params.get(k)]
        for k in keys
        if a.manifest.params.get(k) != b.manifest.params.get(k)
    }
    out: dict[str, Any] = {
        "stages": [a.stage, b.stage],
        "params": params,
        "inputs": {
            k: [a.manifest.inputs.get(k), b.manifest.inputs.get(k)]
            for k in sorted(set(a.manifest.inputs) | set(b.manifest.inputs))
            if a.manifest.inputs.get(k) != b.manifest.inputs.get(k)
        },
    }
    if a.stage == b.stage == "vocab":
        counts = [
            dict(
                zip(
                    *(pq.read_table(e.path / schemas.VOCAB_FILE).column(c).to_pylist() for c in ("token", "count")),
                    strict=True,
                )
            )
            for e in (a, b)
        ]
        changes = sorted(
            ((t, counts[1].get(t, 0) - counts[0].get(t, 0)) for t in set(counts[0]) | set(counts[1])),
            key=lambda tc: (-abs(tc[1]), tc[0]),
        )
        out["vocab"] = {
            "added": sorted(set(counts[1]) - set(counts[0])),
            "removed": sorted(set(counts[0]) - set(counts[1])),
            "largest_count_changes": [{"token": t, "change": c} for t, c in changes[:limit] if c],
        }
    return out


def verify(root: Path) -> list[dict[str, Any]]:
    """Every artifact whose files do not match its manifest (or whose manifest is unreadable)."""
    bad = []
    for stage in STAGES:
        for folder in sorted((root / stage).glob("*")) if (root / stage).is_dir() else []:
            try:
                found = problems(folder, read_manifest(folder))
            except (OSError, ValueError) as exc:
                found = [f"{MANIFEST_NAME}: unreadable ({exc.__class__.__name__})"]
            if found:
                bad.append({"stage": stage, "key": folder.name, "problems": found})
    return bad


def reachable(root: Path) -> set[str]:
    """Keys behind the latest version of every corpus, inputs included."""
    catalog = Catalog(root)
    keep: set[str] = set()
    for corpus in {v.corpus for v in catalog.versions()}:
        _, runs = _version_outputs(catalog, corpus, "latest")
        keep.update(key for run in runs for key in run.values())
    by_key = {e.key: e for e in entries(root)}
    todo = list(keep)
    while todo:
        entry = by_key.get(todo.pop())
        for key in entry.manifest.inputs.values() if entry else ():
            if key not in keep:
                keep.add(key)
                todo.append(key)
    return keep


def gc(root: Path, delete: bool) -> list[dict[str, Any]]:
    """Artifacts no latest corpus version reaches; removed only when `delete`."""
    keep = reachable(root)
    doomed = [e for e in entries(root) if e.key not in keep]
    for entry in doomed if delete else ():
        shutil.rmtree(entry.path)
    return [{"stage": e.stage, "key": e.key, "size": e.size, "created": e.manifest.created} for e in doomed]


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)

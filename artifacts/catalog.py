"""The catalog: human versions of each corpus, an append-only JSON-lines file under a lock."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict


class CorpusVersion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    corpus: str
    version: int
    sha256: str
    size: int
    source: str
    ingest_key: str
    created: str
    new: bool = False


class Catalog:
    def __init__(self, root: Path | str):
        self.path = Path(root) / "catalog.jsonl"
        self._lock_path = Path(root) / "catalog.lock"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def _append(self, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def versions(self, corpus: str | None = None) -> list[CorpusVersion]:
        return [
            CorpusVersion.model_validate({k: v for k, v in e.items() if k != "event"})
            for e in self.entries()
            if e.get("event") == "version" and (corpus is None or e["corpus"] == corpus)
        ]

    def outputs(self, corpus: str, version: int) -> list[dict[str, str]]:
        """Every run's outputs recorded for a version, oldest first: {stage: key}."""
        return [
            entry["outputs"]
            for entry in self.entries()
            if entry.get("event") == "outputs" and entry["corpus"] == corpus and entry["version"] == version
        ]

    def register(self, corpus: str, sha256: str, size: int, source: str, ingest_key: str) -> CorpusVersion:
        """The version of this content of the corpus: the existing one, or the next number."""
        with self._locked():
            known = self.versions(corpus)
            for entry in known:
                if entry.sha256 == sha256:
                    return entry
            entry = CorpusVersion(
                corpus=corpus,
                version=max((e.version for e in known), default=0) + 1,
                sha256=sha256,
                size=size,
                source=source,
                ingest_key=ingest_key,
                created=datetime.now(UTC).isoformat(timespec="milliseconds"),
            )
            self._append({"event": "version", **entry.model_dump(exclude={"new"})})
            return entry.model_copy(update={"new": True})

    def record_outputs(self, corpus: str, version: int, outputs: dict[str, str]) -> None:
        """Remember which artifacts a run made from a corpus version (for lineage and gc), once."""
        with self._locked():
            for entry in self.entries():
                if entry.get("event") == "outputs" and (entry["corpus"], entry["version"], entry["outputs"]) == (
                    corpus,
                    version,
                    outputs,
                ):
                    return
            self._append(
                {
                    "event": "outputs",
                    "corpus": corpus,
                    "version": version,
                    "outputs": outputs,
                    "created": datetime.now(UTC).isoformat(timespec="milliseconds"),
                }
            )

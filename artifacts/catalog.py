"""The catalog: human versions of each corpus, an append-only JSON-lines file under a lock.

A crash mid-append leaves a torn last line: it is ignored (and said so) when reading, and cut off by the next
append. Any other line that does not parse is an error naming the file and the line.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from tasks.errors import CharflowError


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


# What makes a version complete: every prepare stage's output recorded for it.
PREPARE_STAGES = ("ingest", "clean", "vocab", "encode")
log = logging.getLogger("charflow.catalog")
_reported: set[Path] = set()


class CatalogError(CharflowError):
    """A catalog line that cannot be read (other than a torn last one)."""


class Catalog:
    def __init__(self, root: Path | str):
        self.path = Path(root) / "catalog.jsonl"
        self._lock_path = Path(root) / "catalog.lock"
        self._local = threading.local()  # per thread: how deep inside the held lock

    @contextmanager
    def _locked(self, shared: bool = False) -> Iterator[None]:
        """Writers exclusive, readers shared, so a reader never sees a line being appended."""
        if getattr(self._local, "depth", 0):  # inside the lock already: taking it again would wait on ourselves
            self._local.depth += 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        if shared and not self._lock_path.exists():
            yield  # no writer ever: nothing to wait for (and a read-only store stays readable)
            return
        if not shared:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock_path.open("a" if not shared else "r") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            self._local.depth = 1
            try:
                yield
            finally:
                self._local.depth = 0
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> tuple[list[dict[str, Any]], int, bytes]:
        """The entries, where the intact part of the file ends, and what an append must write first there
        (a newline that a crash lost after a complete entry)."""
        if not self.path.exists():
            return [], 0, b""
        data = self.path.read_bytes()
        entries: list[dict[str, Any]] = []
        end = 0
        for number, line in enumerate(data.splitlines(keepends=True), start=1):
            last = not line.endswith(b"\n")
            try:
                entry = json.loads(line) if line.strip() else None
            except ValueError as exc:
                if last:  # a crash mid-append: the write never finished
                    if self.path not in _reported:
                        _reported.add(self.path)
                        log.warning(
                            "%s: line %d was cut short by a crash: ignored; the next write repairs it",
                            self.path,
                            number,
                        )
                    return entries, end, b""
                raise CatalogError(
                    f"{self.path}, line {number}: not a catalog entry ({exc}); restore the file from a backup or "
                    "remove that line"
                ) from None
            if entry is not None:
                entries.append(entry)
            end += len(line)
            if last:
                return entries, end, b"\n"
        return entries, end, b""

    def entries(self) -> list[dict[str, Any]]:
        with self._locked(shared=True):
            return self._read()[0]

    def _append(self, entry: dict[str, Any]) -> None:
        """Under the lock: cut a torn tail, then write the whole line or nothing."""
        _, end, first = self._read()
        line = first + (json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size != end:
                os.ftruncate(fd, end)
            os.lseek(fd, end, os.SEEK_SET)
            written = 0
            while written < len(line):
                written += os.write(fd, line[written:])
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, end)  # never leave half a line behind
            raise
        finally:
            os.close(fd)

    def versions(self, corpus: str | None = None) -> list[CorpusVersion]:
        return [
            CorpusVersion.model_validate({k: v for k, v in e.items() if k != "event"})
            for e in self.entries()
            if e.get("event") == "version" and (corpus is None or e["corpus"] == corpus)
        ]

    def complete(self, corpus: str) -> list[int]:
        """The versions of `corpus` whose prepare outputs are all recorded, oldest first."""
        done: dict[int, set[str]] = {}
        for entry in self.entries():
            if entry.get("event") == "outputs" and entry["corpus"] == corpus:
                done.setdefault(entry["version"], set()).update(entry["outputs"])
        return sorted(v for v, stages in done.items() if set(PREPARE_STAGES) <= stages)

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

    def record_collected(self, keys: list[str]) -> None:
        """Remember what gc removed on purpose, so that verify does not call it lost."""
        if keys:
            with self._locked():
                self._append(
                    {
                        "event": "collected",
                        "keys": sorted(keys),
                        "created": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    }
                )

    def collected(self) -> set[str]:
        """Keys gc removed and no run recorded since: one made again and lost after is missing, not collected."""
        keys: set[str] = set()
        for entry in self.entries():
            if entry.get("event") == "collected":
                keys.update(entry["keys"])
            elif entry.get("event") == "outputs":
                keys.difference_update(entry["outputs"].values())
        return keys

    def record_outputs(self, corpus: str, version: int, outputs: dict[str, str]) -> None:
        """Remember which artifacts a run made from a corpus version (for lineage and gc), once; again when
        one of them was collected since and is made anew."""
        with self._locked():
            said = (corpus, version, outputs)
            if not set(outputs.values()) & self.collected() and any(
                entry.get("event") == "outputs" and (entry["corpus"], entry["version"], entry["outputs"]) == said
                for entry in self.entries()
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

"""The catalog: human versions of each corpus, as a list of entries that only grows.

`Catalog` is what callers ask of one; two implementations keep the entries: `JsonlCatalog`, a JSON-lines file
in this machine's store (the default), and `artifacts.catalog_pg.PostgresCatalog`, shared by every machine.
What the entries mean (versions, complete versions, outputs, what gc collected) and the rule a registration
follows (one number per content, the next number for new content) are the functions below, over the entries
alone: each implementation reads and writes under its own lock and asks them.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

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
Entry = dict[str, Any]
# What a write appends, decided from every entry so far under the writers' lock (None: nothing to append).
Rule = Callable[[list[Entry]], Entry | None]
log = logging.getLogger("charflow.catalog")
_reported: set[Path] = set()


class CatalogError(CharflowError):
    """A catalog that cannot be read or written: a damaged line, an unreachable database."""


class Catalog(Protocol):
    """What the pipeline, references, upkeep and share ask of a catalog, wherever its entries live."""

    def check(self) -> None:
        """Before any work: the catalog can be reached."""
        ...

    def entries(self) -> list[Entry]:
        """Every entry, oldest first."""
        ...

    def versions(self, corpus: str | None = None) -> list[CorpusVersion]: ...

    def complete(self, corpus: str) -> list[int]: ...

    def outputs(self, corpus: str, version: int) -> list[dict[str, str]]: ...

    def collected(self) -> set[str]: ...

    def register(self, corpus: str, sha256: str, size: int, source: str, ingest_key: str) -> CorpusVersion: ...

    def record_outputs(self, corpus: str, version: int, outputs: dict[str, str]) -> None: ...

    def record_collected(self, keys: list[str]) -> None: ...

    def append(self, rule: Rule) -> Entry | None:
        """The entry `rule` makes of every entry so far, appended in one step with reading them (runs, alias
        moves and decisions are written this way: two writers at once never both decide on the same entries)."""
        ...


def versions_of(entries: list[Entry], corpus: str | None = None) -> list[CorpusVersion]:
    """The versions registered (of `corpus`, or of every corpus), oldest first."""
    return [
        CorpusVersion.model_validate({k: v for k, v in e.items() if k != "event"})
        for e in entries
        if e.get("event") == "version" and (corpus is None or e["corpus"] == corpus)
    ]


def complete_of(entries: list[Entry], corpus: str) -> list[int]:
    """The versions of `corpus` whose prepare outputs are all recorded, oldest first."""
    done: dict[int, set[str]] = {}
    for entry in entries:
        if entry.get("event") == "outputs" and entry["corpus"] == corpus:
            done.setdefault(entry["version"], set()).update(entry["outputs"])
    return sorted(v for v, stages in done.items() if set(PREPARE_STAGES) <= stages)


def outputs_of(entries: list[Entry], corpus: str, version: int) -> list[dict[str, str]]:
    """Every run's outputs recorded for a version, oldest first: {stage: key}."""
    return [
        entry["outputs"]
        for entry in entries
        if entry.get("event") == "outputs" and entry["corpus"] == corpus and entry["version"] == version
    ]


def collected_of(entries: list[Entry]) -> set[str]:
    """Keys gc removed and no run recorded since: one made again and lost after is missing, not collected."""
    keys: set[str] = set()
    for entry in entries:
        if entry.get("event") == "collected":
            keys.update(entry["keys"])
        elif entry.get("event") == "outputs":
            keys.difference_update(entry["outputs"].values())
    return keys


class EntryQueries:
    """What a catalog answers from its own `entries()`, by the rules above: the public methods the two
    catalogs share (and nothing private)."""

    def entries(self) -> list[Entry]:
        raise NotImplementedError

    def versions(self, corpus: str | None = None) -> list[CorpusVersion]:
        return versions_of(self.entries(), corpus)

    def complete(self, corpus: str) -> list[int]:
        return complete_of(self.entries(), corpus)

    def outputs(self, corpus: str, version: int) -> list[dict[str, str]]:
        return outputs_of(self.entries(), corpus, version)

    def collected(self) -> set[str]:
        return collected_of(self.entries())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def registration(
    entries: list[Entry], corpus: str, sha256: str, size: int, source: str, ingest_key: str
) -> tuple[CorpusVersion, Entry | None]:
    """The version of this content of the corpus, and the entry to append for it: none when the content has
    its number already, else the next number."""
    known = versions_of(entries, corpus)
    for version in known:
        if version.sha256 == sha256:
            return version, None
    version = CorpusVersion(
        corpus=corpus,
        version=max((v.version for v in known), default=0) + 1,
        sha256=sha256,
        size=size,
        source=source,
        ingest_key=ingest_key,
        created=_now(),
    )
    return version.model_copy(update={"new": True}), {"event": "version", **version.model_dump(exclude={"new"})}


def outputs_entry(entries: list[Entry], corpus: str, version: int, outputs: dict[str, str]) -> Entry | None:
    """The entry recording which artifacts a run made from a corpus version (for lineage and gc): none when
    the same was recorded already, unless one of them was collected since and is made anew."""
    said = (corpus, version, outputs)
    if not set(outputs.values()) & collected_of(entries) and any(
        entry.get("event") == "outputs" and (entry["corpus"], entry["version"], entry["outputs"]) == said
        for entry in entries
    ):
        return None
    return {"event": "outputs", "corpus": corpus, "version": version, "outputs": outputs, "created": _now()}


def collected_entry(keys: list[str]) -> Entry:
    """The entry remembering what gc removed on purpose, so that verify does not call it lost."""
    return {"event": "collected", "keys": sorted(keys), "created": _now()}


class JsonlCatalog(EntryQueries):
    """The entries as an append-only JSON-lines file under a file lock: writers exclusive, readers shared.

    A crash mid-append leaves a torn last line: it is ignored (and said so) when reading, and cut off by the
    next append. Any other line that does not parse is an error naming the file and the line.
    """

    def __init__(self, root: Path | str):
        self.path = Path(root) / "catalog.jsonl"
        self._lock_path = Path(root) / "catalog.lock"

    def check(self) -> None:
        """A file on this machine: nothing to reach (a damaged line is refused where it is read)."""

    @contextmanager
    def _locked(self, shared: bool = False) -> Iterator[None]:
        """Writers exclusive, readers shared, so a reader never sees a line being appended."""
        if shared and not self._lock_path.exists():
            yield  # no writer ever: nothing to wait for (and a read-only store stays readable)
            return
        if not shared:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock_path.open("a" if not shared else "r") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> tuple[list[Entry], int, bytes]:
        """The entries, where the intact part of the file ends, and what an append must write first there
        (a newline that a crash lost after a complete entry)."""
        if not self.path.exists():
            return [], 0, b""
        data = self.path.read_bytes()
        entries: list[Entry] = []
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

    def _append(self, entry: Entry, end: int, first: bytes) -> None:
        """Under the lock, after `_read`: cut a torn tail, then write the whole line or nothing."""
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

    def entries(self) -> list[Entry]:
        with self._locked(shared=True):
            return self._read()[0]

    def register(self, corpus: str, sha256: str, size: int, source: str, ingest_key: str) -> CorpusVersion:
        with self._locked():
            entries, end, first = self._read()
            version, entry = registration(entries, corpus, sha256, size, source, ingest_key)
            if entry is not None:
                self._append(entry, end, first)
        return version

    def append(self, rule: Rule) -> Entry | None:
        with self._locked():
            entries, end, first = self._read()
            if (entry := rule(entries)) is not None:
                self._append(entry, end, first)
        return entry

    def record_outputs(self, corpus: str, version: int, outputs: dict[str, str]) -> None:
        self.append(lambda entries: outputs_entry(entries, corpus, version, outputs))

    def record_collected(self, keys: list[str]) -> None:
        if keys:
            self.append(lambda entries: collected_entry(keys))

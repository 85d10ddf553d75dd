"""The manifest: what an artifact is, where it came from, and the checksums of its files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Self

import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

# A leading underscore: Parquet readers given the folder (pandas, pyarrow datasets) skip it.
MANIFEST_NAME = "_manifest.json"


class Summary(BaseModel):
    """What a stage says of its artifact, typed per kind; stored in the manifest as JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def of(cls, artifact: Any) -> Self:
        """The typed summary of an `ArtifactRef` or a `Manifest`."""
        return cls.model_validate(artifact.summary)


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    size: int
    rows: int | None
    sha256: str


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: str
    key: str
    params: dict[str, Any]
    inputs: dict[str, str]
    code: str
    libraries: dict[str, str]
    created: str
    files: list[FileEntry]
    summary: dict[str, Any] = {}


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# Digests computed while a file was being written (by a thread following it), by path, with the size and
# mtime they are valid for: describing the file then needs no second pass over it.
_hashed_while_written: dict[Path, tuple[int, int, str]] = {}


def remember_digest(path: Path, sha256: str, size: int) -> None:
    """The digest of the file's first `size` bytes, hashed while written: used only if that is all of it."""
    stat = path.stat()
    if stat.st_size == size:
        _hashed_while_written[path] = (stat.st_size, stat.st_mtime_ns, sha256)


def describe_file(path: Path) -> FileEntry:
    rows = pq.ParquetFile(path).metadata.num_rows if path.suffix == ".parquet" else None
    stat = path.stat()
    known = _hashed_while_written.pop(path, None)
    digest = known[2] if known and known[:2] == (stat.st_size, stat.st_mtime_ns) else file_sha256(path)
    return FileEntry(name=path.name, size=stat.st_size, rows=rows, sha256=digest)


def read_manifest(folder: Path) -> Manifest:
    return Manifest.model_validate(json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8")))


def problems(folder: Path, manifest: Manifest) -> list[str]:
    """What is wrong with the folder's files against its manifest; empty when intact."""
    found: list[str] = []
    for entry in manifest.files:
        path = folder / entry.name
        if not path.is_file():
            found.append(f"{entry.name}: missing")
        elif path.stat().st_size != entry.size:
            found.append(f"{entry.name}: size {path.stat().st_size} != {entry.size}")
        elif file_sha256(path) != entry.sha256:
            found.append(f"{entry.name}: sha256 differs from the manifest")
    return found


# Each file's size, modification and change times and inode when the artifact was last checked whole: a cache
# hit that finds them unchanged trusts the files without reading them; a rewrite that restores the mtime still
# moves the ctime. `charflow inspect verify` always re-hashes.
STAT_NAME = "_stat.json"


def _signature(folder: Path, names: list[str]) -> dict[str, list[int]]:
    found = {}
    for name in names:
        stat = (folder / name).stat()
        found[name] = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
    return found


def record_stat(folder: Path, manifest: Manifest) -> None:
    """Remember the files as they are now (just checked or just written); best effort."""
    try:
        signature = _signature(folder, [MANIFEST_NAME, *(f.name for f in manifest.files)])
        (folder / STAT_NAME).write_text(json.dumps(signature))
    except OSError:
        pass


def stat_unchanged(folder: Path, manifest: Manifest) -> bool:
    try:
        recorded = json.loads((folder / STAT_NAME).read_text())
        return recorded == _signature(folder, [MANIFEST_NAME, *(f.name for f in manifest.files)])
    except (OSError, ValueError):
        return False

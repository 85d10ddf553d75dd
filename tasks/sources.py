"""What fetch hands ingest: a located source (`Fetched`: its kind, a local path and the digest of its bytes),
how those bytes are read and digested (a digest cache for unchanged files), and which files of a folder are
text. Fetch makes one; ingest and the member counts read it."""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tasks.errors import CharflowError
from tasks.streams import prefetch

# The files of a folder (or members of a zip) that are the corpus's text, unless the caller says otherwise.
DEFAULT_PATTERNS = ("*.txt",)
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class IngestError(CharflowError, ValueError):
    """A source that cannot be ingested; the message says what and how to fix it."""


class Fetched(BaseModel):
    """A located source: its kind, a local path to its bytes, and their digest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    kind: Literal["file", "zip", "directory", "url"]
    path: str
    sha256: str
    size: int
    name: str
    # The file's size, mtime, ctime and inode when it was hashed: while they stay the same (any write moves
    # the ctime), ingest trusts `sha256` rather than hashing the bytes again as it reads them.
    identity: tuple[int, int, int, int] | None = None


def sha256_file(path: Path, cache: DigestCache | None = None) -> str:
    if cache is not None:
        return cache.sha256(path)
    digest = hashlib.sha256()
    with _read_ahead(path, None) as blocks:
        for block in blocks:  # read by the thread while this one hashes
            digest.update(block)
    return digest.hexdigest()


class DigestCache:
    """The sha256 of local files, reused while a file's path, size, mtime, ctime and inode are all unchanged
    (any change, a rewrite in place included, moves its ctime): a cached run does not read a large source.
    New digests are written by `save`, once, merged into what other runs saved meanwhile."""

    def __init__(self, path: Path):
        self.path = path
        self._known = self._load()
        self._new: dict[str, list] = {}

    def _load(self) -> dict[str, list]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def sha256(self, file: Path) -> str:
        identity = list(file_identity(file))
        known = self._known.get(str(file.resolve()))
        if known and known[:4] == identity:
            return known[4]
        digest = sha256_file(file)
        self.remember(file, digest, identity)
        return digest

    def remember(self, file: Path, digest: str, identity: list[int] | None = None) -> None:
        """A digest computed elsewhere (while downloading)."""
        entry = [*(identity or file_identity(file)), digest]
        self._known[str(file.resolve())] = self._new[str(file.resolve())] = entry

    def save(self) -> None:
        if not self._new:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}")
            partial.write_text(json.dumps({**self._load(), **self._new}))
            os.replace(partial, self.path)
            self._new = {}
        except OSError:
            pass  # a cache: without it, the next run hashes again
        for left in self.path.parent.glob(f".{self.path.name}.*"):  # by a killed run, an hour ago or more
            with contextlib.suppress(OSError):
                if time.time() - left.stat().st_mtime > 3600:
                    left.unlink()


def file_identity(file: Path) -> tuple[int, int, int, int]:
    """Size, mtime, ctime and inode."""
    stat = os.stat(file)
    return stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino


def text_files(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and any(fnmatch.fnmatch(p.name, pat) for pat in patterns))


def directory_digest(folder: Path, files: list[Path], cache: DigestCache | None = None) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    for path in files:
        own = sha256_file(path, cache)
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + own.encode() + b"\n")
        size += path.stat().st_size
    return digest.hexdigest(), size


def is_zip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) in ZIP_MAGIC


BLOCK_BYTES = 1 << 22  # read and decoded at a time: memory stays bounded whatever the corpus size


def _blocks(fh: Any, digest: Any = None) -> Iterator[bytes]:
    while block := fh.read(BLOCK_BYTES):
        if digest is not None:
            digest.update(block)
        yield block


@contextlib.contextmanager
def _read_ahead(path: Path, digest: Any) -> Iterator[Iterator[bytes]]:
    """The file's blocks, read and hashed by a thread (both release the GIL) while the consumer checks them;
    the thread is stopped before the file is closed."""
    with path.open("rb") as fh:
        blocks = prefetch(_blocks(fh, digest))
        try:
            yield blocks
        finally:
            blocks.close()

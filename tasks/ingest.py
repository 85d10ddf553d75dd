"""Ingest: the text of a located source: its members (a file, a folder's text files, a zip's text members)
read in a stable order, checked against their digest, decoded as UTF-8 and joined."""

from __future__ import annotations

import codecs
import fnmatch
import hashlib
import zipfile
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tasks.errors import CharflowError

DEFAULT_CHARS = 63_282  # the book's lyrics, ingested

BOM = codecs.BOM_UTF8
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class IngestError(CharflowError, ValueError):
    """A source that cannot be ingested; the message says what and how to fix it."""


class IngestParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    errors: Literal["strict", "replace"] = "strict"
    patterns: tuple[str, ...] = ("*.txt",)
    max_uncompressed_bytes: int = Field(default=2 << 30, gt=0)


class Fetched(BaseModel):
    """A located source: its kind, a local path to its bytes, and their digest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    kind: Literal["file", "zip", "directory", "url"]
    path: str
    sha256: str
    size: int
    name: str


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def text_files(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and any(fnmatch.fnmatch(p.name, pat) for pat in patterns))


def directory_digest(folder: Path, files: list[Path]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + sha256_file(path).encode() + b"\n")
        size += path.stat().st_size
    return digest.hexdigest(), size


def is_zip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) in ZIP_MAGIC


def _zip_members(path: Path, params: IngestParams) -> list[tuple[str, bytes]]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise IngestError(
            f"{path}: not a readable zip archive ({exc}). Re-download it or pass the text itself."
        ) from exc
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        for info in infos:
            parts = PurePosixPath(info.filename.replace("\\", "/")).parts
            if info.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise IngestError(
                    f"{path}: member {info.filename!r} escapes the archive (absolute path or '..'). "
                    "Refusing the archive; repack it with relative member names."
                )
        wanted = sorted(
            (
                i
                for i in infos
                if any(fnmatch.fnmatch(PurePosixPath(i.filename).name, p) for p in params.patterns)
                and not i.filename.startswith("__MACOSX/")
            ),
            key=lambda i: i.filename,
        )
        if not wanted:
            names = ", ".join(i.filename for i in infos[:10]) or "none"
            raise IngestError(
                f"{path}: the archive has no text member matching {', '.join(params.patterns)} "
                f"(members: {names}). Pass --pattern to choose members."
            )
        declared = sum(i.file_size for i in wanted)
        if declared > params.max_uncompressed_bytes:
            raise IngestError(
                f"{path}: members would expand to {declared:,} bytes, over the {params.max_uncompressed_bytes:,}-byte "
                "cap (a zip bomb?). Raise --max-uncompressed-bytes if the archive is trusted."
            )
        members: list[tuple[str, bytes]] = []
        budget = params.max_uncompressed_bytes
        for info in wanted:
            with archive.open(info) as fh:
                # The declared size can lie: read no more than what is left of the cap.
                data = fh.read(budget + 1)
            if len(data) > budget:
                raise IngestError(
                    f"{path}: member {info.filename!r} expands past the {params.max_uncompressed_bytes:,}-byte cap "
                    "(a zip bomb?). Raise --max-uncompressed-bytes if the archive is trusted."
                )
            budget -= len(data)
            members.append((info.filename, data))
        return members


def read_members(fetched: Fetched, params: IngestParams) -> list[tuple[str, bytes]]:
    """The raw bytes of each text member, in a stable order, checked against the fetched digest."""
    path = Path(fetched.path)
    if fetched.kind == "directory":
        files = text_files(path, params.patterns)
        if directory_digest(path, files)[0] != fetched.sha256:
            raise IngestError(f"{fetched.source}: the folder changed while it was being read; run again.")
        return [(p.relative_to(path).as_posix(), p.read_bytes()) for p in files]
    if sha256_file(path) != fetched.sha256:
        raise IngestError(f"{fetched.source}: the file changed while it was being read; run again.")
    if fetched.kind == "zip" or is_zip(path):
        return _zip_members(path, params)
    return [(path.name, path.read_bytes())]


def decode_member(name: str, data: bytes, errors: str = "strict") -> str:
    """Strict UTF-8 by default; a byte-order mark is dropped."""
    skip = len(BOM) if data.startswith(BOM) else 0
    try:
        return data[skip:].decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        offset = exc.start + skip
        bad = data[offset : offset + 4]
        raise IngestError(
            f"{name}: invalid UTF-8 at byte offset {offset} (bytes {bad!r}: {exc.reason}). "
            "Convert the file to UTF-8, or pass --decode-errors replace to substitute U+FFFD."
        ) from None


def ingest(members: list[tuple[str, bytes]], params: IngestParams) -> str:
    """The corpus text: the members decoded and joined by a newline; an empty corpus is refused."""
    text = "\n".join(decode_member(name, data, params.errors) for name, data in members)
    if not text:
        names = ", ".join(name for name, _ in members) or "the source"
        raise IngestError(f"{names}: no text at all (0 characters); pass a corpus with some text in it")
    return text

"""Ingest: locate a corpus (file, directory, zip or URL), check its bytes and decode them to text."""

from __future__ import annotations

import codecs
import fnmatch
import glob
import hashlib
import os
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tasks.errors import CharflowError

# The book's corpus, pinned to the bytes that give its published numbers.
DEFAULT_CORPUS = "jaychou"
DEFAULT_FILE_NAME = "jaychou_lyrics.txt.zip"
DEFAULT_URL = "https://raw.githubusercontent.com/ShusenTang/Dive-into-DL-PyTorch/master/data/jaychou_lyrics.txt.zip"
DEFAULT_SHA256 = "3cfedd7d174111cdad5a27eaffaa6a2432a2842cf2590a03dd8a97610ea07043"
DEFAULT_SIZE = 52_607
DEFAULT_CHARS = 63_282

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


class Located(BaseModel):
    """A source as asked for: where, what digest to expect, and what to call the corpus."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    sha256: str | None = None
    name: str | None = None


def resolve_source(
    source: str | None, name: str | None = None, sha256: str | None = None, search: list[Path] | None = None
) -> Located:
    """No source means the book's corpus: a checksum-verified local copy on CHARFLOW_DATA_PATH, else its URL."""
    if source:
        return Located(source=source, sha256=sha256, name=name)
    if search is None:
        search = [Path(p).expanduser() for p in os.environ.get("CHARFLOW_DATA_PATH", "").split(os.pathsep) if p]
    local = [folder / DEFAULT_FILE_NAME for folder in search if (folder / DEFAULT_FILE_NAME).is_file()]
    return Located(
        source=str(local[0]) if local else DEFAULT_URL, sha256=sha256 or DEFAULT_SHA256, name=name or DEFAULT_CORPUS
    )


def expand_sources(sources: list[str], patterns: tuple[str, ...] = IngestParams().patterns) -> list[Located]:
    """Re-ingestion's sources: each file or zip in a folder or matching a glob is a corpus, named by its file."""
    found: dict[str, Located] = {}
    for entry in sources:
        if entry.startswith(("http://", "https://")):
            found[entry] = Located(source=entry, name=corpus_name(entry))
            continue
        if any(ch in entry for ch in "*?["):
            paths = sorted(Path(p) for p in glob.glob(os.path.expanduser(entry)))
        elif Path(entry).expanduser().is_dir():
            paths = sorted(Path(entry).expanduser().iterdir())
        elif Path(entry).expanduser().is_file():
            paths = [Path(entry).expanduser()]
        else:
            raise IngestError(f"{entry}: no such file, folder or matching path; fix the reingest sources")
        for path in paths:
            if path.is_file() and (path.suffix == ".zip" or any(fnmatch.fnmatch(path.name, p) for p in patterns)):
                found[str(path.resolve())] = Located(source=str(path.resolve()), name=corpus_name(path.name))
    return list(found.values())


def corpus_name(source: str) -> str:
    """jaychou_lyrics.txt.zip -> jaychou_lyrics; a folder keeps its name."""
    base = PurePosixPath(source.rstrip("/").split("?")[0]).name or "corpus"
    for suffix in (".zip", ".txt", ".text", ".md"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
    return base or "corpus"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _check_digest(source: str, actual: str, expected: str | None) -> None:
    if expected and actual != expected.lower():
        raise IngestError(
            f"{source}: sha256 mismatch: expected {expected.lower()}, got {actual}. "
            "The source changed or is not the corpus you meant; pass the new digest with --sha256 "
            "if the change is intended."
        )


def _text_files(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and any(fnmatch.fnmatch(p.name, pat) for pat in patterns))


def _directory_digest(folder: Path, files: list[Path]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + _sha256_file(path).encode() + b"\n")
        size += path.stat().st_size
    return digest.hexdigest(), size


def download(url: str, downloads: Path, expected_sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Stream a URL into the download cache, named by its digest; a cached copy is reused."""
    name = corpus_name(url) + (".zip" if url.split("?")[0].endswith(".zip") else ".txt")
    if expected_sha256:
        cached = downloads / f"{expected_sha256.lower()}-{name}"
        if cached.is_file() and _sha256_file(cached) == expected_sha256.lower():
            return cached
    downloads.mkdir(parents=True, exist_ok=True)
    partial = downloads / f".{uuid.uuid4().hex}.part"
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as out:
            while block := response.read(1 << 20):
                digest.update(block)
                out.write(block)
        actual = digest.hexdigest()
        _check_digest(url, actual, expected_sha256)
        final = downloads / f"{actual}-{name}"
        os.replace(partial, final)
        return final
    except (urllib.error.URLError, OSError) as exc:
        raise IngestError(
            f"{url}: download failed ({exc}). Check the address and the network, or pass a local copy as SOURCE."
        ) from exc
    finally:
        partial.unlink(missing_ok=True)


def fetch(
    source: str,
    downloads: Path,
    expected_sha256: str | None = None,
    patterns: tuple[str, ...] = IngestParams().patterns,
) -> Fetched:
    """Locate a source and digest its bytes (a URL is downloaded first)."""
    if source.startswith(("http://", "https://")):
        path = download(source, downloads, expected_sha256)
        kind = "zip" if _is_zip(path) else "file"
        return Fetched(
            source=source,
            kind=kind,
            path=str(path),
            sha256=_sha256_file(path),
            size=path.stat().st_size,
            name=corpus_name(source),
        )
    path = Path(source).expanduser()
    if not path.exists():
        raise IngestError(f"{source}: no such file or directory. Pass an existing file, folder, .zip or http(s) URL.")
    if path.is_dir():
        files = _text_files(path, patterns)
        if not files:
            raise IngestError(
                f"{source}: the folder holds no text file matching {', '.join(patterns)}. "
                "Add text files or change --pattern."
            )
        sha256, size = _directory_digest(path, files)
        if expected_sha256:
            _check_digest(source, sha256, expected_sha256)
        return Fetched(
            source=source,
            kind="directory",
            path=str(path.resolve()),
            sha256=sha256,
            size=size,
            name=corpus_name(str(path.resolve())),
        )
    sha256 = _sha256_file(path)
    _check_digest(source, sha256, expected_sha256)
    return Fetched(
        source=source,
        kind="zip" if _is_zip(path) else "file",
        path=str(path.resolve()),
        sha256=sha256,
        size=path.stat().st_size,
        name=corpus_name(source),
    )


def _is_zip(path: Path) -> bool:
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
        files = _text_files(path, params.patterns)
        if _directory_digest(path, files)[0] != fetched.sha256:
            raise IngestError(f"{fetched.source}: the folder changed while it was being read; run again.")
        return [(p.relative_to(path).as_posix(), p.read_bytes()) for p in files]
    if _sha256_file(path) != fetched.sha256:
        raise IngestError(f"{fetched.source}: the file changed while it was being read; run again.")
    if fetched.kind == "zip" or _is_zip(path):
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
    """The corpus text: the members decoded and joined by a newline."""
    return "\n".join(decode_member(name, data, params.errors) for name, data in members)

"""Fetch: locate a corpus (a file, a folder, a zip or a URL; the book's lyrics by default), download it when
it is remote, and digest its bytes. Nothing here shapes an artifact's bytes: ingest reads what this finds."""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import os
import re
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, field_validator

from tasks.sources import (
    DEFAULT_PATTERNS,
    DigestCache,
    Fetched,
    IngestError,
    directory_digest,
    file_identity,
    is_zip,
    sha256_file,
    text_files,
)

# The book's corpus, pinned to the bytes that give its published numbers.
DEFAULT_CORPUS = "jaychou"
DEFAULT_FILE_NAME = "jaychou_lyrics.txt.zip"
DEFAULT_URL = "https://raw.githubusercontent.com/ShusenTang/Dive-into-DL-PyTorch/master/data/jaychou_lyrics.txt.zip"
DEFAULT_SHA256 = "3cfedd7d174111cdad5a27eaffaa6a2432a2842cf2590a03dd8a97610ea07043"
DEFAULT_SIZE = 52_607


# A corpus name: what `corpus@version/stage` can name again. Any characters (spaces, CJK: file names' own) but
# '@', '/', '\\' and control characters, 128 at most, not blank at either end, not '.' or '..'.
NAME_RULE = "1 to 128 characters, none of '@', '/', '\\' or control characters, no space at either end"
_NOT_IN_NAMES = re.compile(r"[@/\\\x00-\x1f\x7f-\x9f]")


def check_corpus_name(name: str) -> str:
    if not name or len(name) > 128 or name != name.strip() or name in (".", "..") or _NOT_IN_NAMES.search(name):
        raise ValueError(f"{name!r} cannot be a corpus name ({NAME_RULE}); choose another --name")
    return name


class Located(BaseModel):
    """A source as asked for: where, what digest to expect, and what to call the corpus."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    sha256: str | None = None
    name: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, name: str | None) -> str | None:
        return None if name is None else check_corpus_name(name)

    @field_validator("source")
    @classmethod
    def _no_credentials(cls, source: str) -> str:
        # A flow run's parameters are stored by Prefect before charflow's code runs: a password there would
        # be kept, shown in the UI and copied into every retry.
        scheme, sep, rest = source.partition("://")
        if sep and scheme.lower() in ("http", "https") and ":" in rest.partition("/")[0].rpartition("@")[0]:
            raise ValueError(
                "a source URL may not carry a password (it would be stored with the run's parameters, and shown); "
                "download the corpus and pass its path"
            )
        return source


def resolve_source(
    source: str | None, name: str | None = None, sha256: str | None = None, search: Sequence[Path] = ()
) -> Located:
    """No source means the book's corpus: a checksum-verified local copy in one of the `search` folders (the
    caller's CHARFLOW_DATA_PATH), else its URL."""
    if source:
        return Located(source=source, sha256=sha256, name=name)
    local = [folder / DEFAULT_FILE_NAME for folder in search if (folder / DEFAULT_FILE_NAME).is_file()]
    return Located(
        source=str(local[0]) if local else DEFAULT_URL, sha256=sha256 or DEFAULT_SHA256, name=name or DEFAULT_CORPUS
    )


def expand_sources(sources: list[str], patterns: tuple[str, ...] = DEFAULT_PATTERNS) -> list[Located]:
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
    """jaychou_lyrics.txt.zip -> jaychou_lyrics; a folder keeps its name; what a name cannot hold becomes '_'."""
    base = PurePosixPath(source.rstrip("/").split("?")[0]).name or "corpus"
    for suffix in (".zip", ".txt", ".text", ".md"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
    base = _NOT_IN_NAMES.sub("_", base).strip()[:128].strip()
    return base if base not in ("", ".", "..") else "corpus"


def _check_digest(source: str, actual: str, expected: str | None) -> None:
    if expected and actual != expected.lower():
        raise IngestError(
            f"{source}: sha256 mismatch: expected {expected.lower()}, got {actual}. "
            "The source changed or is not the corpus you meant; pass the new digest with --sha256 "
            "if the change is intended."
        )


def download(
    url: str, downloads: Path, cache: DigestCache, expected_sha256: str | None = None, timeout: float = 60.0
) -> Path:
    """Stream a URL into the download cache, named by its digest. A cached copy with the expected digest is
    reused as it is; otherwise the server is asked whether it changed (ETag, Last-Modified), where it says."""
    name = corpus_name(url) + (".zip" if url.split("?")[0].endswith(".zip") else ".txt")
    if expected_sha256:
        cached = downloads / f"{expected_sha256.lower()}-{name}"
        if cached.is_file() and sha256_file(cached, cache) == expected_sha256.lower():
            return cached
    downloads.mkdir(parents=True, exist_ok=True)
    validators = _validators(downloads)
    known = validators.get(url, {})
    request = urllib.request.Request(url)
    if known and (downloads / known["file"]).is_file():
        if known.get("etag"):
            request.add_header("If-None-Match", known["etag"])
        if known.get("last_modified"):
            request.add_header("If-Modified-Since", known["last_modified"])
    partial = downloads / f".{uuid.uuid4().hex}.part"
    digest = hashlib.sha256()
    try:
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code != 304:
                raise
            cached = downloads / known["file"]  # not modified: the copy we have is current
            _check_digest(url, sha256_file(cached, cache), expected_sha256)
            return cached
        with response, partial.open("wb") as out:
            while block := response.read(1 << 20):
                digest.update(block)
                out.write(block)
            headers = response.headers
        actual = digest.hexdigest()
        _check_digest(url, actual, expected_sha256)
        final = downloads / f"{actual}-{name}"
        os.replace(partial, final)
        cache.remember(final, actual)
        validators[url] = {
            "file": final.name,
            "etag": headers.get("ETag"),
            "last_modified": headers.get("Last-Modified"),
        }
        _save_validators(downloads, validators)
        return final
    except (urllib.error.URLError, OSError) as exc:
        raise IngestError(
            f"{url}: download failed ({exc}). Check the address and the network, or pass a local copy as SOURCE."
        ) from exc
    finally:
        partial.unlink(missing_ok=True)


DIGESTS = ".digests.json"  # in the downloads folder: sha256 of local sources by their stat
VALIDATORS = ".validators.json"  # in the downloads folder: each URL's ETag and Last-Modified


def _validators(downloads: Path) -> dict[str, dict]:
    try:
        return json.loads((downloads / VALIDATORS).read_text())
    except (OSError, ValueError):
        return {}


def _save_validators(downloads: Path, validators: dict[str, dict]) -> None:
    partial = downloads / f".{VALIDATORS}.{uuid.uuid4().hex}"
    partial.write_text(json.dumps(validators))
    os.replace(partial, downloads / VALIDATORS)


def fetch(
    source: str,
    downloads: Path,
    expected_sha256: str | None = None,
    patterns: tuple[str, ...] = DEFAULT_PATTERNS,
) -> Fetched:
    """Locate a source and digest its bytes (a URL is downloaded first). Digests of local files are kept in
    the downloads folder and reused while the file is unchanged."""
    cache = DigestCache(downloads / DIGESTS)
    try:
        return _fetch(source, downloads, expected_sha256, patterns, cache)
    finally:
        cache.save()


def on_this_machine(fetched: Fetched, downloads: Path, patterns: tuple[str, ...]) -> Fetched:
    """The source fetched on another machine (a Dask worker), as this one sees it: a URL downloaded again
    here, its digest checked; a local path must be the same on every machine (a shared mount)."""
    if Path(fetched.path).exists():
        return fetched
    if fetched.source.startswith(("http://", "https://")):
        return fetch(fetched.source, downloads, fetched.sha256, patterns)
    raise IngestError(
        f"{fetched.source}: not found on {socket.gethostname()}, where this task runs; every Dask worker reads a "
        "local source at the same path: put it on a folder they all mount, or give an http(s) URL"
    )


def check_source(source: str) -> None:
    """What can be told of a source before any work: a local path exists (a URL answers when it is fetched)."""
    if not source.startswith(("http://", "https://")) and not Path(source).expanduser().exists():
        raise IngestError(f"{source}: no such file or directory. Pass an existing file, folder, .zip or http(s) URL.")


def _fetch(
    source: str, downloads: Path, expected_sha256: str | None, patterns: tuple[str, ...], cache: DigestCache
) -> Fetched:
    if source.startswith(("http://", "https://")):
        path = download(source, downloads, cache, expected_sha256)
        kind = "zip" if is_zip(path) else "file"
        identity = file_identity(path)
        return Fetched(
            source=source,
            kind=kind,
            path=str(path),
            identity=identity,
            sha256=sha256_file(path, cache),
            size=path.stat().st_size,
            name=corpus_name(source),
        )
    check_source(source)
    path = Path(source).expanduser()
    if path.is_dir():
        files = text_files(path, patterns)
        if not files:
            raise IngestError(
                f"{source}: the folder holds no text file matching {', '.join(patterns)}. "
                "Add text files or change --pattern."
            )
        sha256, size = directory_digest(path, files, cache)
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
    identity = file_identity(path)  # before hashing: a change meanwhile moves the ctime past it
    sha256 = sha256_file(path, cache)
    _check_digest(source, sha256, expected_sha256)
    return Fetched(
        source=source,
        kind="zip" if is_zip(path) else "file",
        path=str(path.resolve()),
        identity=identity,
        sha256=sha256,
        size=path.stat().st_size,
        name=corpus_name(source),
    )

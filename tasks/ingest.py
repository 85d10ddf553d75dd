"""Ingest: the text of a located source: its members (a file, a folder's text files, a zip's text members)
read in a stable order, checked against their digest, decoded as UTF-8 and joined."""

from __future__ import annotations

import codecs
import fnmatch
import hashlib
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from tasks.sources import (
    DEFAULT_PATTERNS,
    Fetched,
    IngestError,
    _blocks,
    _read_ahead,
    file_identity,
    is_zip,
    sha256_file,
    text_files,
)

DEFAULT_CHARS = 63_282  # the book's lyrics, ingested

BOM = codecs.BOM_UTF8


class IngestParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    errors: Literal["strict", "replace"] = Field(
        "strict", description="strict: invalid UTF-8 is an error naming the file and byte offset; replace: U+FFFD"
    )
    patterns: tuple[str, ...] = Field(DEFAULT_PATTERNS, description="text file / zip member pattern, repeatable")
    max_uncompressed_bytes: int = Field(default=2 << 30, gt=0, description="cap on a zip's expanded size")


def _wanted_zip_members(path: Path, archive: zipfile.ZipFile, params: IngestParams) -> list[zipfile.ZipInfo]:
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
    return wanted


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise IngestError(
            f"{path}: not a readable zip archive ({exc}). Re-download it or pass the text itself."
        ) from exc


def _zip_streams(path: Path, params: IngestParams) -> Iterator[tuple[str, Iterator[bytes]]]:
    with _open_zip(path) as archive:
        budget = params.max_uncompressed_bytes
        for info in _wanted_zip_members(path, archive, params):

            def capped(info: zipfile.ZipInfo = info) -> Iterator[bytes]:
                nonlocal budget
                with archive.open(info) as fh:
                    # The declared size can lie: read no more than what is left of the cap.
                    for block in _blocks(fh):
                        budget -= len(block)
                        if budget < 0:
                            raise IngestError(
                                f"{path}: member {info.filename!r} expands past the "
                                f"{params.max_uncompressed_bytes:,}-byte cap (a zip bomb?). Raise "
                                "--max-uncompressed-bytes if the archive is trusted."
                            )
                        yield block

            yield info.filename, capped()


def member_streams(fetched: Fetched, params: IngestParams) -> Iterator[tuple[str, Iterator[bytes]]]:
    """Each text member's name and bytes, block by block, in a stable order; the source's digest is checked
    as it is read (a source that changed since it was fetched is refused once read through)."""
    path = Path(fetched.path)
    changed = IngestError(f"{fetched.source}: the source changed while it was being read; run again.")
    if fetched.kind == "directory":
        files = text_files(path, params.patterns)
        listing = hashlib.sha256()
        for file in files:
            name = file.relative_to(path).as_posix()
            own = hashlib.sha256()
            with _read_ahead(file, own) as blocks:
                yield name, blocks
            listing.update(name.encode() + b"\0" + own.hexdigest().encode() + b"\n")
        if listing.hexdigest() != fetched.sha256:
            raise changed
        return
    unchanged = fetched.identity is not None and file_identity(path) == fetched.identity
    if fetched.kind == "zip" or is_zip(path):
        # The archive's members are read out of order: hash it first.
        if not unchanged and sha256_file(path) != fetched.sha256:
            raise changed
        yield from _zip_streams(path, params)
        return
    digest = None if unchanged else hashlib.sha256()
    with _read_ahead(path, digest) as blocks:
        yield path.name, blocks
    if file_identity(path) != fetched.identity if digest is None else digest.hexdigest() != fetched.sha256:
        raise changed


def member_label(fetched: Fetched, name: str) -> str:
    """A member as a message names it: the path given for a file (not a downloaded copy's name), a folder's
    member under the folder given, an archive's after it."""
    if fetched.kind == "directory":
        return f"{fetched.source.rstrip('/')}/{name}"
    if fetched.kind == "zip" or is_zip(Path(fetched.path)):
        return f"{fetched.source}: {name}"
    return fetched.source


def expected_bytes(fetched: Fetched, params: IngestParams) -> int:
    """About how many bytes the ingested text takes: the members' (declared) sizes."""
    path = Path(fetched.path)
    if fetched.kind == "zip" or (fetched.kind != "directory" and is_zip(path)):
        with _open_zip(path) as archive:
            return sum(i.file_size for i in _wanted_zip_members(path, archive, params))
    return fetched.size


def ingest_utf8(fetched: Fetched, params: IngestParams, members: list[tuple[str, int]]) -> Iterator[bytes]:
    """The corpus text as valid UTF-8 blocks: each member checked or decoded as it streams (strictly by
    default, the byte offset of an invalid sequence named), a byte-order mark dropped, members joined by a
    newline. `members` receives each member's name and size in bytes."""
    produced = 0
    for index, (name, blocks) in enumerate(member_streams(fetched, params)):
        separator = b"\n" if index else b""
        size = 0
        pieces = _strict(member_label(fetched, name), blocks) if params.errors == "strict" else _replaced(blocks)
        for piece, read in pieces:
            size += read
            if piece or separator:
                yield separator + piece
                produced += len(piece) + len(separator)
                separator = b""
        members.append((name, size))
    if produced == 0:
        names = ", ".join(name for name, _ in members) or "the source"
        raise IngestError(f"{names}: no text at all (0 characters); pass a corpus with some text in it")


def _without_bom(blocks: Iterator[bytes]) -> Iterator[tuple[bool, bytes, int]]:
    """(last, bytes, bytes read): the member's blocks, a leading byte-order mark left out (but counted)."""
    first = True
    for final, block in _with_last(_first_at_least(blocks, len(BOM))):
        read = len(block)
        if first and block.startswith(BOM):
            block = block[len(BOM) :]
        first = False
        yield final, block, read


def _char_start(data: bytes) -> int:
    """Where the last character of `data` starts when it is cut short (else len(data))."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # a lead byte (or ASCII): does its character fit?
            need = 1 if byte < 0x80 else 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4
            return len(data) - back if need > back else len(data)
    return len(data)


def utf8_array(data: bytes | np.ndarray) -> pa.LargeStringArray:
    """UTF-8 bytes (or a uint8 array) as a one-string Arrow array, without a copy or a check."""
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    return pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(data))


def _valid_utf8(data: bytes) -> bool:
    """Arrow's UTF-8 validation: an order of magnitude faster than decoding to str."""
    try:
        utf8_array(data).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _strict(name: str, blocks: Iterator[bytes]) -> Iterator[tuple[bytes, int]]:
    """The member's bytes as they are, each piece checked to be UTF-8 and ending on a whole character."""
    carry, offset = b"", 0  # offset: where `carry` starts in the member, after any byte-order mark
    skip = 0
    for final, block, read in _without_bom(blocks):
        skip = skip or read - len(block)
        data = carry + block
        cut = len(data) if final else _char_start(data)
        piece, carry = data[:cut], data[cut:]
        if not _valid_utf8(piece):
            try:
                piece.decode("utf-8")
            except UnicodeDecodeError as exc:
                position = skip + offset + exc.start
                raise IngestError(
                    f"{name}: invalid UTF-8 at byte offset {position} (bytes {piece[exc.start : exc.start + 4]!r}: "
                    f"{exc.reason}). Convert the file to UTF-8, or pass --decode-errors replace to substitute U+FFFD."
                ) from None
        offset += len(piece)
        yield piece, read


def _replaced(blocks: Iterator[bytes]) -> Iterator[tuple[bytes, int]]:
    """The member decoded with U+FFFD for invalid sequences, re-encoded."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for final, block, read in _without_bom(blocks):
        yield decoder.decode(block, final).encode("utf-8"), read


def _first_at_least(blocks: Iterator[bytes], size: int) -> Iterator[bytes]:
    """The same bytes, the first block at least `size` long (when there are that many): a byte-order mark
    is seen whole."""
    head = b""
    for block in blocks:
        head += block
        if len(head) >= size:
            break
    if head:
        yield head
    yield from blocks


def _with_last(blocks: Iterator[bytes]) -> Iterator[tuple[bool, bytes]]:
    """Each block and whether it is the last (an empty last one when there are none)."""
    previous = None
    for block in blocks:
        if previous is not None:
            yield False, previous
        previous = block
    yield True, previous if previous is not None else b""


def read_members(fetched: Fetched, params: IngestParams) -> list[tuple[str, bytes]]:
    """The raw bytes of each text member, whole: for small sources and tests (the stage streams them)."""
    return [(name, b"".join(blocks)) for name, blocks in member_streams(fetched, params)]


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

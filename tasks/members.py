"""A corpus of many files (a folder or a zip), counted member by member: each member read, checked and
cleaned as ingest and clean would, and its characters counted, so that members can be counted on different
machines at once. Their sum is the cleaned corpus's count, exactly, when cleaning maps each ASCII byte to
another and keeps every character (no --max-chars): the vocabulary needs no pass of its own over the text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.clean import CleanParams, ascii_translation
from tasks.ingest import IngestParams, _open_zip, _replaced, _strict, _wanted_zip_members, member_label
from tasks.sources import Fetched, IngestError, _blocks, _read_ahead, file_identity, is_zip, sha256_file, text_files
from tasks.vocab import add_counts

NEWLINE = ord("\n")  # ingest joins members with it; cleaning then maps it like any other byte


@dataclass(frozen=True)
class MemberCount:
    name: str
    read: int  # bytes read
    counts: np.ndarray  # (max code point + 1,) int64, of the member's cleaned characters
    sha256: str  # the member file's digest (a folder's members); "" for a zip's


def counted_table(clean: CleanParams) -> bytes | None:
    """The byte map when members can be counted apart: a per-byte cleaning that keeps every character."""
    return ascii_translation(clean) if clean.max_chars is None else None


def _is_archive(fetched: Fetched) -> bool:
    return fetched.kind == "zip" or (fetched.kind != "directory" and is_zip(Path(fetched.path)))


def member_names(fetched: Fetched, params: IngestParams) -> list[str]:
    """The members in ingest's order: a folder's text files, a zip's text members, or the one file."""
    path = Path(fetched.path)
    if fetched.kind == "directory":
        return [file.relative_to(path).as_posix() for file in text_files(path, params.patterns)]
    if _is_archive(fetched):
        with _open_zip(path) as archive:
            return [info.filename for info in _wanted_zip_members(path, archive, params)]
    return [path.name]


@contextmanager
def _member_blocks(fetched: Fetched, params: IngestParams, name: str, digest) -> Iterator[Iterator[bytes]]:
    path = Path(fetched.path)
    if fetched.kind == "directory":
        with _read_ahead(path / name, digest) as blocks:
            yield blocks
        return
    # The archive as fetched: unchanged since (same file), or the same digest.
    unchanged = fetched.identity is not None and file_identity(path) == fetched.identity
    if not unchanged and sha256_file(path) != fetched.sha256:
        raise IngestError(f"{fetched.source}: the source changed while it was being read; run again.")
    with _open_zip(path) as archive:
        info = next(i for i in _wanted_zip_members(path, archive, params) if i.filename == name)
        with archive.open(info) as fh:
            yield _capped(fh, params.max_uncompressed_bytes, f"{path}: member {name!r}")


def _capped(fh, cap: int, what: str) -> Iterator[bytes]:
    left = cap
    for block in _blocks(fh):
        left -= len(block)
        if left < 0:
            raise IngestError(
                f"{what} expands past the {cap:,}-byte cap (a zip bomb?). Raise --max-uncompressed-bytes if the "
                "archive is trusted."
            )
        yield block


def count_member(fetched: Fetched, params: IngestParams, table: bytes, name: str) -> MemberCount:
    """One member read and checked as ingest reads it, cleaned by `table`, its characters counted."""
    from tasks.utf8 import count_utf8

    digest = hashlib.sha256() if fetched.kind == "directory" else None
    read = 0

    def cleaned(blocks: Iterator[bytes]) -> Iterator[np.ndarray]:
        nonlocal read
        pieces = _strict(member_label(fetched, name), blocks) if params.errors == "strict" else _replaced(blocks)
        for piece, size in pieces:
            read += size
            yield np.frombuffer(piece.translate(table), dtype=np.uint8)

    with _member_blocks(fetched, params, name, digest) as blocks:
        counts = count_utf8(cleaned(blocks))
    return MemberCount(name, read, counts, digest.hexdigest() if digest is not None else "")


def joined_counts(fetched: Fetched, members: list[MemberCount], table: bytes) -> np.ndarray:
    """The cleaned corpus's counts from its members' (in ingest's order) and the newlines ingest puts between
    them (empty members too); a folder whose files changed since they were fetched is refused, as ingest
    refuses it."""
    if fetched.kind == "directory":
        digest = hashlib.sha256()
        for member in members:
            digest.update(member.name.encode() + b"\0" + member.sha256.encode() + b"\n")
        if digest.hexdigest() != fetched.sha256:
            raise IngestError(f"{fetched.source}: the source changed while it was being read; run again.")
    total = np.zeros(0, dtype=np.int64)
    for member in members:
        total = add_counts(total, member.counts)
    separators = len(members) - 1  # after every member but the first, empty ones too
    separator = table[NEWLINE]
    if separators:
        total = add_counts(total, np.bincount([separator], minlength=separator + 1) * separators)
    return total

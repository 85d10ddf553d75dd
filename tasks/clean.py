"""Clean: Unicode normalisation, lowercasing, a replacement table and truncation, as declared."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.errors import CharflowError

BOOK_MAX_CHARS = 10_000


class CleanError(CharflowError, ValueError):
    """Cleaning that leaves nothing to learn from."""


class CleanParams(BaseModel):
    """The book's cleaning by default: newlines to spaces, the first 10,000 characters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Pairs, not a mapping: replacements apply in order and may interact ("\r\n" before "\n").
    replacements: tuple[tuple[str, str], ...] = (("\n", " "), ("\r", " "))
    max_chars: int | None = Field(default=BOOK_MAX_CHARS, gt=0)
    normalize: Literal["NFC", "NFKC"] | None = None
    lowercase: bool = False

    @field_validator("replacements")
    @classmethod
    def _non_empty_targets(cls, value: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        for old, _ in value:
            if not old:
                raise ValueError("a replacement must replace a non-empty string (got '' => ...)")
        return value


def clean(text: str, params: CleanParams) -> str:
    if params.normalize:
        text = unicodedata.normalize(params.normalize, text)
    if params.lowercase:
        text = text.lower()
    for old, new in params.replacements:
        text = text.replace(old, new)
    if params.max_chars is not None:
        text = text[: params.max_chars]
    return text


def chunk_safe(params: CleanParams) -> bool:
    """Whether cleaning chunk by chunk gives exactly the whole text's result.

    Normalisation, lowercasing (Greek final sigma) and multi-character patterns look across chunk boundaries.
    """
    return not params.normalize and not params.lowercase and all(len(old) == 1 for old, _ in params.replacements)


def clean_chunks(chunks: Iterable[str], params: CleanParams) -> Iterator[str]:
    """`clean` over a text given in chunks, streaming when that is exact."""
    if not chunk_safe(params):
        yield clean("".join(chunks), params)
        return
    budget = params.max_chars
    for chunk in chunks:
        for old, new in params.replacements:
            chunk = chunk.replace(old, new)
        if budget is not None:
            chunk = chunk[:budget]
            budget -= len(chunk)
        yield chunk
        if budget == 0:
            return


def ascii_translation(params: CleanParams) -> bytes | None:
    """A byte table when cleaning is a per-byte map of the UTF-8 text: ASCII-to-ASCII single characters only.

    ASCII bytes never occur inside a multi-byte UTF-8 sequence, so such replacements need no decoding.
    """
    if not chunk_safe(params):
        return None
    table = bytearray(range(256))
    for old, new in params.replacements:
        if not (len(new) == 1 and old.isascii() and new.isascii()):
            return None
        # Later replacements apply to the output of earlier ones: compose the maps.
        table = bytearray(ord(new) if b == ord(old) else b for b in table)
    return bytes(table)


def clean_utf8(chunks: Iterable[bytes], table: bytes, max_chars: int | None) -> Iterator[bytes]:
    """`clean` on UTF-8 chunks with a table from `ascii_translation`; decodes only what truncation needs."""
    budget = max_chars
    for data in chunks:
        data = data.translate(table)
        if budget is not None:
            kept = data.decode("utf-8")[:budget]
            budget -= len(kept)
            data = kept.encode("utf-8")
        yield data
        if budget == 0:
            return

"""Clean's byte maps, vocab counts and encoding straight from UTF-8 bytes, in compiled loops that let go of
the GIL.

Decoding to `str` holds the GIL and costs 1.2 ns a byte of Chinese text before any counting (2026, 2 cores):
these loops decode, count or look up in one pass, 0.6 and 0.7 ns a byte, on as many threads as there are.
Their results equal `count_code_points` and `encode` on the decoded text, and `clean_utf8`'s byte maps (tests
compare them). The stages use them for large texts only (from COMPILED_MIN_BYTES), so each entry point also
has malloc keep the blocks it frees (tasks.allocator).

A chunk is a (bytes,) uint8 array of valid UTF-8 (a text artifact: ingest checked it, its manifest holds its
digest). Whatever the bytes, a loop stays inside its arrays: a sequence cut short or past U+10FFFF stops it,
and the error names where. Misplaced continuation bytes are not looked for: one more test in the loop took
a third of its time, for what ingest and `charflow inspect verify` already check.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from numba import njit

from tasks.allocator import keep_freed_memory
from tasks.encode import encode_with, lookup_table
from tasks.errors import CharflowError
from tasks.vocab import Vocab

CODE_POINTS = 0x110000


class Utf8Error(CharflowError, ValueError):
    """Bytes that are not UTF-8 where a text artifact should hold nothing else."""


@njit(inline="always", boundscheck=False)
def _next_code_point(data: np.ndarray, i: int) -> tuple[np.int64 | int, int]:
    """(code point, where the next starts) of the sequence at `i`, which must fit in `data`; -1 past U+10FFFF."""
    lead = np.int64(data[i])
    if lead < 0x80:
        return lead, i + 1
    if lead < 0xE0:
        return ((lead & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F), i + 2
    if lead < 0xF0:
        return ((lead & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F), i + 3
    point = (
        ((lead & 0x07) << 18)
        | ((np.int64(data[i + 1]) & 0x3F) << 12)
        | ((np.int64(data[i + 2]) & 0x3F) << 6)
        | (np.int64(data[i + 3]) & 0x3F)
    )
    return (point if point < CODE_POINTS else -1), i + 4


@njit(inline="always", boundscheck=False)
def _run(data, i, stop, limit, counts, table, out, chars, unknown):
    """Decode the sequences that start before `stop` and end by `limit`: count them (`counts` has rows) or
    look them up into `out`. (next position, characters, unknown, whether every sequence was whole)."""
    counting = len(counts) > 0
    while i < stop:
        start = i
        point, i = _next_code_point(data, i)
        if point < 0 or i > limit or (not counting and chars == len(out)):
            return start, chars, unknown, False
        if counting:
            counts[point] += 1
        else:
            index = table[point]
            unknown += index < 0
            out[chars] = index
        chars += 1
    return i, chars, unknown, True


@njit(nogil=True, cache=True, boundscheck=False)
def _decode(data, counts, table, out):
    """(characters, how many map to -1 in `table`, the offset of bytes that are not UTF-8 or -1)."""
    # Up to the last 3 bytes every sequence fits; those are read from a zero-padded copy, so that a sequence
    # cut short reads nothing past the end.
    i, chars, unknown, whole = _run(data, 0, len(data) - 3, len(data), counts, table, out, 0, 0)
    if not whole:
        return chars, unknown, i
    tail = np.zeros(7, dtype=np.uint8)
    tail[: len(data) - i] = data[i:]
    j, chars, unknown, whole = _run(tail, 0, len(data) - i, len(data) - i, counts, table, out, chars, unknown)
    return chars, unknown, -1 if whole else i + j


_NO_COUNTS = np.zeros(0, dtype=np.int64)
_NO_TABLE = np.zeros(0, dtype=np.int32)


def _not_utf8(at: int) -> Utf8Error:
    return Utf8Error(f"the text is not valid UTF-8 at byte {at}; check the store with `charflow inspect verify`")


def count_utf8(chunks: Iterable[np.ndarray]) -> np.ndarray:
    """Occurrences of each code point over all chunks: (max code point + 1,) int64, as `count_code_points`."""
    keep_freed_memory()
    counts = np.zeros(CODE_POINTS, dtype=np.int64)
    offset = 0
    for chunk in chunks:
        _, _, bad = _decode(chunk, counts, _NO_TABLE, _NO_TABLE)
        if bad >= 0:
            raise _not_utf8(offset + bad)
        offset += len(chunk)
    present = np.flatnonzero(counts)
    return counts[: present[-1] + 1 if len(present) else 0].copy()


def encode_utf8(chunks: Iterable[np.ndarray], vocab: Vocab) -> Iterator[np.ndarray]:
    """(chars,) int32 indices for each chunk, as `encode_chunks` on the decoded text."""
    keep_freed_memory()
    table = lookup_table(vocab)
    offset = chars_before = 0
    for chunk in chunks:
        out = np.empty(np.count_nonzero(chunk.view(np.int8) >= -0x40), dtype=np.int32)  # not 0x80-0xBF: a lead
        chars, unknown, bad = _decode(chunk, _NO_COUNTS, table, out)
        if bad >= 0 or chars != len(out):  # more or fewer characters than lead bytes: not UTF-8 either
            raise _not_utf8(offset + max(bad, 0))
        if unknown:  # <unk>, or the error that names the characters: rare, so done on the decoded text
            out = encode_with(table, chunk.tobytes().decode("utf-8"), vocab, chars_before)
        yield out
        offset += len(chunk)
        chars_before += chars


@njit(nogil=True, cache=True, boundscheck=False)
def _replace_byte(data: np.ndarray, old: int, new: int, out: np.ndarray) -> None:
    for i in range(len(data)):  # a compare and a select: vectorized, 0.08 ns a byte
        byte = data[i]
        out[i] = new if byte == old else byte


@njit(nogil=True, cache=True, boundscheck=False)
def _translate(data: np.ndarray, table: np.ndarray, out: np.ndarray) -> None:
    for i in range(len(data)):  # a table lookup a byte: 0.4 ns
        out[i] = table[data[i]]


def map_bytes(chunks: Iterable[np.ndarray], table: bytes) -> Iterator[np.ndarray]:
    """Each chunk through a byte table from `ascii_translation` (as `clean_utf8` without truncation)."""
    keep_freed_memory()
    changed = [(old, new) for old, new in enumerate(table) if old != new]
    # A few bytes, none mapped to another changed byte (the book's rules): one pass each.
    by_pass = len(changed) <= 4 and not {new for _, new in changed} & {old for old, _ in changed}
    lookup = np.frombuffer(table, dtype=np.uint8)
    for chunk in chunks:
        out = np.empty_like(chunk)
        if by_pass and changed:
            for number, (old, new) in enumerate(changed):
                _replace_byte(out if number else chunk, old, new, out)
        elif by_pass:
            out[:] = chunk
        else:
            _translate(chunk, lookup, out)
        yield out


def load() -> None:
    """Load every compiled loop from numba's cache (0.15 s), for the signatures the stages call them with; and
    have malloc keep freed blocks, as the stages that will call them do."""
    keep_freed_memory()
    data = np.frombuffer(b"a", dtype=np.uint8)  # read-only, as Arrow's buffers are
    out = np.empty(1, dtype=np.uint8)
    _decode(data, np.zeros(CODE_POINTS, dtype=np.int64), _NO_TABLE, _NO_TABLE)
    _replace_byte(data, 10, 32, out)
    _replace_byte(out, 10, 32, out)
    _translate(data, np.arange(256, dtype=np.uint8), out)

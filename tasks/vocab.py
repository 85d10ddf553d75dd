"""Vocabulary: a deterministic character index with counts, built with array operations."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

UNK = "<unk>"
BOOK_VOCAB_SIZE = 1_027  # distinct characters in the book's 10,000 cleaned characters


class VocabParams(BaseModel):
    """Order by code point (default) or by descending count with code point breaking ties."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    order: Literal["codepoint", "frequency"] = Field(
        "codepoint", description="vocabulary order: by code point, or by descending count"
    )
    reserved: tuple[str, ...] = Field((), description="reserved token such as '<unk>', repeatable")
    min_count: int = Field(default=1, ge=1, description="rarer characters map to <unk>")

    @model_validator(mode="after")
    def _check(self) -> VocabParams:
        if len(set(self.reserved)) != len(self.reserved):
            raise ValueError(f"reserved tokens must be distinct, got {list(self.reserved)}")
        for token in self.reserved:
            if len(token) < 2:
                raise ValueError(
                    f"reserved token {token!r} is a single character and could collide with the corpus; "
                    "use a longer name such as '<pad>'"
                )
        if self.min_count > 1 and UNK not in self.reserved:
            raise ValueError(
                f"min_count={self.min_count} maps rare characters to {UNK}, which is not reserved; "
                f"add --reserved '{UNK}'"
            )
        return self


@dataclass(frozen=True)
class Vocab:
    """Tokens in index order: reserved tokens first, then characters."""

    tokens: list[str]
    counts: np.ndarray  # (vocab,) int64
    reserved: int

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def unk(self) -> int | None:
        return self.tokens.index(UNK) if UNK in self.tokens[: self.reserved] else None


def code_points(text: str) -> np.ndarray:
    """The text as an array of code points, (chars,) uint16 or uint32: a view of its encoding, no Python loop."""
    utf16 = text.encode("utf-16-le")
    if len(utf16) == 2 * len(text):
        # No surrogate pairs: every character fits one UTF-16 unit (half the bytes of UTF-32).
        return np.frombuffer(utf16, dtype=np.uint16)
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def count_code_points(chunks: Iterable[str]) -> np.ndarray:
    """Occurrences of each code point over all chunks: (max code point + 1,) int64."""
    total = np.zeros(0, dtype=np.int64)
    for chunk in chunks:
        counts = np.bincount(code_points(chunk))
        if len(counts) > len(total):
            total = add_counts(total, counts)
        else:
            total[: len(counts)] += counts  # in place: no copy of the total per chunk
    return total


def add_counts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The sum of two `count_code_points` results, of any lengths."""
    short, long = sorted((a, b), key=len)
    total = long.astype(np.int64)  # a copy
    total[: len(short)] += short
    return total


def build_vocab(text: str | Iterable[str], params: VocabParams) -> Vocab:
    """The vocabulary of a text, given whole or in chunks."""
    return vocab_from_counts(count_code_points([text] if isinstance(text, str) else text), params)


def vocab_from_counts(counts: np.ndarray, params: VocabParams) -> Vocab:
    """The vocabulary from code point counts, (max code point + 1,) int64."""
    present = np.flatnonzero(counts)
    if params.order == "frequency":
        present = present[np.lexsort((present, -counts[present]))]
    keep = counts[present] >= params.min_count
    kept, dropped = present[keep], present[~keep]
    reserved_counts = np.zeros(len(params.reserved), dtype=np.int64)
    if UNK in params.reserved:
        reserved_counts[params.reserved.index(UNK)] = counts[dropped].sum()
    chars = kept.astype("<u4").tobytes().decode("utf-32-le")
    return Vocab(
        tokens=list(params.reserved) + list(chars),
        counts=np.concatenate([reserved_counts, counts[kept].astype(np.int64)]),
        reserved=len(params.reserved),
    )

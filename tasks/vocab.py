"""Vocabulary: a deterministic character index with counts, built with array operations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

UNK = "<unk>"
BOOK_VOCAB_SIZE = 1_027  # distinct characters in the book's 10,000 cleaned characters


class VocabParams(BaseModel):
    """Order by code point (default) or by descending count with code point breaking ties."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order: Literal["codepoint", "frequency"] = "codepoint"
    reserved: tuple[str, ...] = ()
    min_count: int = Field(default=1, ge=1)

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
    """The text as an array of code points: a view of its UTF-32 encoding, no Python loop."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # (chars,)


def build_vocab(text: str, params: VocabParams) -> Vocab:
    counts = np.bincount(code_points(text))  # (max code point + 1,)
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

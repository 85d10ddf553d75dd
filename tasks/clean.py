"""Clean: Unicode normalisation, lowercasing, a replacement table and truncation, as declared."""

from __future__ import annotations

import unicodedata
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

BOOK_MAX_CHARS = 10_000


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

"""Encode: the text as an index sequence through a code-point lookup table; decode is its inverse."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict

from tasks.errors import CharflowError
from tasks.text_reader import TextReader
from tasks.vocab import Vocab, code_points


class EncodeError(CharflowError, ValueError):
    """Characters the vocabulary cannot represent."""


class EncodeParams(BaseModel):
    """Encoding has no knobs yet; a model all the same, so every stage is keyed alike."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def lookup_table(vocab: Vocab) -> np.ndarray:
    """Code point -> index for every code point (0x110000,), -1 where the vocabulary has no such character."""
    table = np.full(0x110000, -1, dtype=np.int32)
    table[code_points("".join(vocab.tokens[vocab.reserved :]))] = np.arange(vocab.reserved, len(vocab), dtype=np.int32)
    return table


def encode_with(table: np.ndarray, text: str, vocab: Vocab, offset: int) -> np.ndarray:
    cps = code_points(text)  # (chars,) uint16, or uint32 with astral characters
    # Every code point is inside the table, so take's cheapest bounds mode never applies: 2x faster than
    # fancy indexing (numpy 2.4).
    indices = np.take(table, cps, mode="wrap")  # (chars,) int32
    if indices.min(initial=0) < 0:
        unknown = indices < 0
        if vocab.unk is None:
            first = np.flatnonzero(unknown)[:5]
            shown = ", ".join(f"{chr(cps[i])!r} at {offset + i}" for i in first)
            raise EncodeError(
                f"{int(unknown.sum())} characters are not in the vocabulary ({shown}); "
                "build the vocabulary from this text or reserve '<unk>'"
            )
        indices[unknown] = vocab.unk
    return indices


def encode_chunks(chunks: Iterable[str], vocab: Vocab) -> Iterator[np.ndarray]:
    """(chars,) int32 indices for each chunk; outside the vocabulary is <unk>, or an error without it."""
    table = lookup_table(vocab)
    offset = 0
    for chunk in chunks:
        yield encode_with(table, chunk, vocab, offset)
        offset += len(chunk)


def encode_stream(text: TextReader, vocab: Vocab) -> Iterator[np.ndarray]:
    """`encode_chunks` over a stored text; a large one straight from its UTF-8, in compiled loops."""
    if text.compiled_pays:
        from tasks.utf8 import encode_utf8  # numba: 0.35 s to load (it imports this module: imported late)

        return encode_utf8(text.arrays(), vocab)
    return encode_chunks(text.strings(), vocab)


def encode(text: str, vocab: Vocab) -> np.ndarray:
    return encode_with(lookup_table(vocab), text, vocab, 0)


def decode(indices: np.ndarray, vocab: Vocab) -> str:
    if vocab.reserved == 0:
        cps = code_points("".join(vocab.tokens))
        return cps[np.asarray(indices)].astype("<u4").tobytes().decode("utf-32-le")
    tokens = np.asarray(vocab.tokens, dtype=object)
    return "".join(tokens[np.asarray(indices)])

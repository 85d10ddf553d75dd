"""Encode: the text as an index sequence through a code-point lookup table; decode is its inverse."""

from __future__ import annotations

import numpy as np

from tasks.vocab import Vocab, code_points


class EncodeError(ValueError):
    """Characters the vocabulary cannot represent."""


def lookup_table(vocab: Vocab) -> np.ndarray:
    """Code point -> index, -1 where the vocabulary has no such character."""
    cps = code_points("".join(vocab.tokens[vocab.reserved :]))
    table = np.full(int(cps.max(initial=0)) + 1, -1, dtype=np.int32)
    table[cps] = np.arange(vocab.reserved, len(vocab), dtype=np.int32)
    return table


def encode(text: str, vocab: Vocab) -> np.ndarray:
    """(chars,) int32 indices; characters outside the vocabulary map to <unk>, or are an error without it."""
    cps = code_points(text)  # (chars,)
    table = lookup_table(vocab)
    inside = cps < len(table)
    indices = np.full(len(cps), -1, dtype=np.int32)
    indices[inside] = table[cps[inside]]
    missing = indices < 0
    if missing.any():
        if vocab.unk is None:
            first = np.flatnonzero(missing)[:5]
            shown = ", ".join(f"{chr(cps[i])!r} at {i}" for i in first)
            raise EncodeError(
                f"{int(missing.sum())} characters are not in the vocabulary ({shown}); "
                "build the vocabulary from this text or reserve '<unk>'"
            )
        indices[missing] = vocab.unk
    return indices


def decode(indices: np.ndarray, vocab: Vocab) -> str:
    if vocab.reserved == 0:
        cps = code_points("".join(vocab.tokens))
        return cps[np.asarray(indices)].astype("<u4").tobytes().decode("utf-32-le")
    tokens = np.asarray(vocab.tokens, dtype=object)
    return "".join(tokens[np.asarray(indices)])

"""The vocabulary: the book's 1,027 symbols, orders, reserved tokens, code points beyond the basic plane."""

import numpy as np
import pytest
from pydantic import ValidationError

from tasks.vocab import BOOK_VOCAB_SIZE, UNK, VocabParams, build_vocab


def test_book_vocabulary_by_code_point(book_text):
    vocab = build_vocab(book_text, VocabParams())
    assert len(vocab) == BOOK_VOCAB_SIZE == 1_027
    assert vocab.tokens == sorted(set(book_text))
    assert int(vocab.counts.sum()) == 10_000
    assert vocab.counts[vocab.tokens.index(" ")] == book_text.count(" ")


def test_frequency_order_breaks_ties_by_code_point():
    vocab = build_vocab("bbaaccd", VocabParams(order="frequency"))
    assert vocab.tokens == ["a", "b", "c", "d"]
    assert vocab.counts.tolist() == [2, 2, 2, 1]
    vocab = build_vocab("zyyx", VocabParams(order="frequency"))
    assert vocab.tokens == ["y", "x", "z"]


def test_reserved_tokens_and_min_count():
    vocab = build_vocab("aaabbc", VocabParams(reserved=("<pad>", UNK), min_count=2))
    assert vocab.tokens == ["<pad>", UNK, "a", "b"]
    assert vocab.counts.tolist() == [0, 1, 3, 2]
    assert vocab.unk == 1


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"min_count": 2}, "add --reserved '<unk>'"),
        ({"min_count": 0}, "min_count"),
        ({"reserved": ("x",)}, "single character"),
        ({"reserved": ("<a>", "<a>")}, "distinct"),
        ({"order": "random"}, "order"),
        ({"sort": "codepoint"}, "sort"),
    ],
)
def test_bad_params_are_refused(bad, message):
    with pytest.raises(ValidationError, match=message):
        VocabParams(**bad)


def test_code_points_beyond_the_basic_plane():
    from tasks.vocab import code_points

    assert code_points("a好").dtype == np.uint16
    wide = code_points("a\U0001f600好")
    assert wide.dtype == np.uint32
    assert wide.tolist() == [0x61, 0x1F600, 0x597D]
    vocab = build_vocab(["a\U0001f600", "好a"], VocabParams())
    assert vocab.tokens == ["a", "好", "\U0001f600"]
    assert vocab.counts.tolist() == [2, 1, 1]

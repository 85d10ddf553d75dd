"""Encoding: the lookup table, unknown characters, chunks, and the inverse."""

import numpy as np
import pytest

from tasks.encode import EncodeError, decode, encode, encode_chunks
from tasks.vocab import UNK, VocabParams, build_vocab


def test_round_trip_on_the_lyrics(book_text):
    vocab = build_vocab(book_text, VocabParams())
    indices = encode(book_text, vocab)
    assert indices.dtype == np.int32
    assert len(indices) == 10_000
    assert decode(indices, vocab) == book_text
    assert [vocab.tokens[i] for i in indices[:20]] == list(book_text[:20])


def test_unknown_character_without_unk_is_an_error():
    vocab = build_vocab("ab", VocabParams())
    with pytest.raises(EncodeError, match=r"'\\U0001f600' at 2|'😀' at 2"):
        encode("ab😀", vocab)


def test_reserved_tokens_encode_and_decode():
    vocab = build_vocab("aaabbc", VocabParams(reserved=("<pad>", UNK), min_count=2))
    indices = encode("abcx", vocab)
    assert indices.tolist() == [2, 3, 1, 1]
    assert decode(indices, vocab) == f"ab{UNK}{UNK}"


def test_beyond_the_basic_plane_round_trips():
    vocab = build_vocab(["a\U0001f600", "好a"], VocabParams())
    assert decode(encode("好\U0001f600a", vocab), vocab) == "好\U0001f600a"


def test_encoding_in_chunks_matches_and_reports_global_offsets():

    vocab = build_vocab("abc好", VocabParams())
    chunks = ["ab", "c好a", "b"]
    assert np.concatenate(list(encode_chunks(chunks, vocab))).tolist() == encode("abc好ab", vocab).tolist()
    with pytest.raises(EncodeError, match="'z' at 5"):
        list(encode_chunks(["abc", "aaz"], vocab))

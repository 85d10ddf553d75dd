"""Counting and encoding straight from UTF-8 bytes: the same numbers as on the decoded text, whatever the
characters and wherever the chunks end, and bytes that are not UTF-8 are one clear error."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.clean import CleanParams, ascii_translation, clean_utf8
from tasks.encode import EncodeError, encode, encode_chunks
from tasks.utf8 import Utf8Error, count_utf8, encode_utf8, map_bytes
from tasks.vocab import BOOK_VOCAB_SIZE, UNK, VocabParams, build_vocab, count_code_points, vocab_from_counts


def arrays(*chunks: str | bytes) -> list[np.ndarray]:
    return [np.frombuffer(c.encode("utf-8") if isinstance(c, str) else c, dtype=np.uint8) for c in chunks]


def test_the_books_counts_and_indices(book_text):
    chunks = arrays(book_text[:3_333], book_text[3_333:])  # cut between two characters
    counts = count_utf8(chunks)
    np.testing.assert_array_equal(counts, count_code_points([book_text]))
    vocab = vocab_from_counts(counts, VocabParams())
    assert len(vocab) == BOOK_VOCAB_SIZE
    assert counts.sum() == 10_000
    indices = np.concatenate(list(encode_utf8(chunks, vocab)))
    assert indices.dtype == np.int32
    np.testing.assert_array_equal(indices, encode(book_text, vocab))


# Every plane: ASCII, 2-, 3- and 4-byte sequences; no surrogates (not UTF-8); chunks of 0 to 3 bytes too.
characters = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=("Cs",))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(characters, max_size=12), min_size=1, max_size=6))
def test_equal_to_the_decoded_texts_numbers(chunks):
    text = "".join(chunks)
    counts = count_utf8(arrays(*chunks))
    np.testing.assert_array_equal(counts, count_code_points(chunks))
    if text:
        vocab = build_vocab(text, VocabParams())
        got = list(encode_utf8(arrays(*chunks), vocab))
        assert [a.tolist() for a in got] == [a.tolist() for a in encode_chunks(chunks, vocab)]


def test_unknown_characters_are_unk_or_the_decoded_texts_error():
    vocab = build_vocab("abc好", VocabParams(reserved=(UNK,)))
    assert np.concatenate(list(encode_utf8(arrays("ab", "c😀z"), vocab))).tolist() == [1, 2, 3, 0, 0]
    plain = build_vocab("abc好", VocabParams())
    with pytest.raises(EncodeError, match="'z' at 5"):  # the offset counts characters, over the chunks
        list(encode_utf8(arrays("abc", "好az"), plain))


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (b"ab\xe5\xa5", 2),  # cut short at the end
        (b"\xe5", 0),
        (b"a\xf7\xbf\xbf\xbfb", 1),  # past U+10FFFF
    ],
)
def test_bytes_that_are_not_utf8_are_one_clear_error(data, offset):
    message = f"not valid UTF-8 at byte {4 + offset}; check the store with `charflow inspect verify`"
    with pytest.raises(Utf8Error, match=message):
        count_utf8(arrays("abcd", data))
    with pytest.raises(Utf8Error, match=f"not valid UTF-8 at byte {4 + offset}"):
        list(encode_utf8(arrays("abcd", data), build_vocab("abcd", VocabParams())))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.text(characters, max_size=12), min_size=1, max_size=4),
    st.lists(st.tuples(st.sampled_from("\n\r\t ab,"), st.sampled_from(" _ab\n")), max_size=6),
)
def test_byte_maps_equal_clean_utf8(chunks, rules):
    """The book's rules (a pass per byte), chained ones (a table), and none."""
    params = CleanParams(replacements=rules, max_chars=None)
    table = ascii_translation(params)
    expected = list(clean_utf8([c.encode("utf-8") for c in chunks], table, None))
    assert [a.tobytes() for a in map_bytes(arrays(*chunks), table)] == expected

import pytest
from pydantic import ValidationError

from tasks.clean import BOOK_MAX_CHARS, CleanParams, clean

# What the seed notebook prints for the first 20 cleaned characters.
NOTEBOOK_FIRST_20 = "想要有直升机 想要和你飞到宇宙去 想要和"


def test_book_cleaning(lyrics_text):
    cleaned = clean(lyrics_text, CleanParams())
    assert len(cleaned) == BOOK_MAX_CHARS == 10_000
    assert cleaned[:20] == NOTEBOOK_FIRST_20
    assert cleaned == lyrics_text.replace("\n", " ").replace("\r", " ")[:10000]


def test_whole_corpus(lyrics_text):
    assert len(clean(lyrics_text, CleanParams(max_chars=None))) == 63_282


def test_replacements_apply_in_order():
    params = CleanParams(replacements=(("\r\n", "\n"), ("\n", "|")), max_chars=None)
    assert clean("a\r\nb\nc", params) == "a|b|c"


def test_normalize_and_lowercase():
    text = "ＡＢｃ e\u0301"
    assert clean(text, CleanParams(normalize="NFKC", lowercase=True)) == "abc \u00e9"
    assert clean(text, CleanParams(normalize="NFC")) == "ＡＢｃ \u00e9"
    assert clean(text, CleanParams()) == text


@pytest.mark.parametrize(
    "bad,field",
    [
        ({"max_chars": 0}, "max_chars"),
        ({"max_chars": -5}, "max_chars"),
        ({"replacements": (("", "x"),)}, "non-empty"),
        ({"normalize": "NFD"}, "normalize"),
        ({"max_char": 5}, "max_char"),
    ],
)
def test_bad_params_are_refused(bad, field):
    with pytest.raises(ValidationError, match=field):
        CleanParams(**bad)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tasks.clean import ascii_translation, chunk_safe, clean_chunks, clean_utf8  # noqa: E402

ALPHABET = st.sampled_from(list("ab \n\r\r\n好人ΣσςİI") + ["\U0001f600", "e\u0301"])
PARAMS = st.builds(
    CleanParams,
    replacements=st.sampled_from([(("\n", " "), ("\r", " ")), (("\r\n", "\n"),), (("a", "好"),), (("好", "x"),), ()]),
    max_chars=st.one_of(st.none(), st.integers(1, 40)),
    normalize=st.sampled_from([None, "NFC", "NFKC"]),
    lowercase=st.booleans(),
)


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


@settings(max_examples=300, deadline=None)
@given(text=st.lists(ALPHABET, max_size=60).map("".join), cuts=st.lists(st.integers(0, 60), max_size=5), params=PARAMS)
def test_cleaning_in_chunks_equals_cleaning_the_whole(text, cuts, params):
    chunks = split(text, cuts)
    expected = clean(text, params)
    assert "".join(clean_chunks(chunks, params)) == expected
    table = ascii_translation(params)
    if table is not None:
        assert chunk_safe(params)
        got = b"".join(clean_utf8([c.encode() for c in chunks], table, params.max_chars))
        assert got.decode() == expected


def test_byte_path_only_for_ascii_single_characters():
    assert ascii_translation(CleanParams()) is not None
    assert ascii_translation(CleanParams(replacements=(("a", "好"),))) is None
    assert ascii_translation(CleanParams(replacements=(("\r\n", " "),))) is None
    assert ascii_translation(CleanParams(lowercase=True)) is None
    table = ascii_translation(CleanParams(replacements=(("a", "b"), ("b", "c"))))
    assert b"abc".translate(table) == b"ccc"

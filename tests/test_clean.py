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

"""Cleaning: the book's table, rules in order (literal and regular expressions), normalisation, lowercasing,
truncation; the same result over chunks of any size as over the whole text."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from artifacts.keys import keyed_params
from tasks.clean import (
    BOOK_MAX_CHARS,
    CleanError,
    CleanParams,
    Replacement,
    ascii_translation,
    clean,
    clean_chunks,
    clean_utf8,
)

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
    ("bad", "field"),
    [
        ({"max_chars": 0}, "max_chars"),
        ({"max_chars": -5}, "max_chars"),
        ({"replacements": (("", "x"),)}, "at least 1 character"),
        ({"normalize": "NFD"}, "normalize"),
        ({"max_char": 5}, "max_char"),
    ],
)
def test_bad_params_are_refused(bad, field):
    with pytest.raises(ValidationError, match=field):
        CleanParams(**bad)


def regex(pattern, new):
    return Replacement(old=pattern, new=new, regex=True)


def test_the_english_editions_preprocessing():
    """d2l 1.0 (English): re.sub('[^A-Za-z]+', ' ', text).lower() on the whole text."""
    text = "The Time Machine, by H. G. Wells [1898]\n\nI\n\nThe Time Traveller (for so it will be convenient"
    params = CleanParams(replacements=[regex("[^A-Za-z]+", " ")], lowercase=True, max_chars=None, max_match=16)
    assert clean(text, params) == re.sub("[^A-Za-z]+", " ", text).lower()
    assert "".join(clean_chunks(chunked(text, 3), params)) == clean(text, params)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(?<=a)b", "looks behind"),
        ("(?<!a)b", "looks behind"),
        ("(a)\\1", "refers back to a group"),
        ("^a", "anchors with ^ or $ without MULTILINE"),
        ("a$", "anchors with ^ or $ without MULTILINE"),
        ("\\Aa", "anchors at the ends of the whole text"),
        ("a\\Z", "anchors at the ends of the whole text"),
        ("(", "does not compile"),
    ],
)
def test_patterns_that_cannot_be_chunked_are_refused_with_the_reason(pattern, reason):
    with pytest.raises(ValidationError, match=re.escape(reason)):
        regex(pattern, "")


def test_a_match_longer_than_max_match_is_an_error():
    params = CleanParams(replacements=[regex("a+", "A")], max_chars=None, max_match=4)
    assert "".join(clean_chunks(["aa", "aa b"], params)) == "A b"
    with pytest.raises(CleanError, match="regex 'a[+]' matched 5 characters, more than --max-match 4"):
        "".join(clean_chunks(["aaa", "aa b"], params))


def test_a_lookahead_is_exact_when_max_match_covers_what_it_reads():
    """max_match bounds what a match reads from its start, lookahead included: "a(?=bb)" reads 3."""
    params = CleanParams(replacements=[regex("a(?=bb)", "X"), regex("c(?!dd)", "Y")], max_chars=None, max_match=3)
    text = "abb ab cdd cd"
    assert clean(text, params) == "Xbb ab cdd Yd"
    for size in range(1, 5):
        assert "".join(clean_chunks(chunked(text, size), params)) == clean(text, params)


def test_a_run_too_long_to_lowercase_names_what_would_end_it():
    params = CleanParams(lowercase=True, replacements=(), max_chars=None, max_match=100)
    with pytest.raises(CleanError, match="without whitespace, a digit or a CJK ideograph, more than --max-match 100"):
        "".join(clean_chunks(["ABC" * 50, "DEF" * 50], params))
    assert "".join(clean_chunks(["ABC" * 30, " DEF"], params)) == "abc" * 30 + " def"


def test_a_replacement_naming_a_missing_group_is_refused_before_any_work():
    with pytest.raises(ValidationError, match="invalid group reference 2"):
        regex("(a)", "\\2")


ALPHABET = st.sampled_from(
    list("ab xX\n\r好人ΣσςİI.'1") + ["\r\n", "\U0001f600", "e\u0301", "\u1100\u1161", "\u11a8", "ＡＢ"]
)
# Every match of these is at most 6 characters, and max_match is 6: chunks of a few characters put many
# boundaries inside and around matches.
BOUNDED_RULES = [
    (("\n", " "), ("\r", " ")),
    (("\r\n", "\n"),),
    (("b", "a"), ("a", "x")),  # the byte path by replace: a and b both become x
    (("b", "c"), ("a", "b")),  # by translate: a becomes b, which is itself replaced
    (("a", "b"), ("x", "X"), ("1", "."), ("\n", " ")),  # by translate: more than three bytes
    (("a", "好"),),
    (("ab", "-"), ("b", "ab")),
    (regex("[^A-Za-z]{1,4}", " "),),
    (regex("x{0,3}", "-"),),
    (regex("(a)(b)?", "[\\2\\1]"),),
    (regex("(?m)^a|b$", "#"),),
    (regex("\\bx\\w{0,3}", "W"),),
    (regex("a(?=b)", "A"),),
    (regex("Σ{1,2}", "s"), ("ς", "S")),
    (),
]


def chunked(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@settings(max_examples=400, deadline=None)
@given(
    text=st.lists(ALPHABET, max_size=60).map("".join),
    size=st.integers(1, 5),
    rules=st.sampled_from(BOUNDED_RULES),
    max_chars=st.one_of(st.none(), st.integers(1, 40)),
)
def test_rules_over_chunks_equal_rules_over_the_whole(text, size, rules, max_chars):
    params = CleanParams(replacements=rules, max_chars=max_chars, max_match=6)
    assert "".join(clean_chunks(chunked(text, size), params)) == clean(text, params)
    if (table := ascii_translation(params)) is not None:
        got = b"".join(clean_utf8([c.encode() for c in chunked(text, size)], table, params.max_chars))
        assert got.decode() == clean(text, params)


WORDS = st.lists(st.lists(ALPHABET, min_size=1, max_size=2).map("".join), max_size=20).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(text=WORDS, size=st.integers(1, 5), normalize=st.sampled_from([None, "NFC", "NFKC"]), lower=st.booleans())
def test_normalising_and_lowercasing_over_chunks_equal_the_whole(text, size, normalize, lower):
    """Words of at most 2 symbols (4 characters) between spaces: every unbroken run fits max_match (6)."""
    params = CleanParams(normalize=normalize, lowercase=lower, replacements=(), max_chars=None, max_match=6)
    assert "".join(clean_chunks(chunked(text, size), params)) == clean(text, params)


@settings(max_examples=200, deadline=None)
@given(
    text=st.lists(ALPHABET, max_size=60).map("".join),
    size=st.integers(1, 5),
    rules=st.sampled_from([*BOUNDED_RULES, (regex("x*", "-"),), (regex("[^A-Za-z]+", " "),)]),
    normalize=st.sampled_from([None, "NFC", "NFKC"]),
    lower=st.booleans(),
    max_chars=st.one_of(st.none(), st.integers(1, 40)),
)
def test_every_step_together_over_chunks_equals_the_whole(text, size, rules, normalize, lower, max_chars):
    params = CleanParams(replacements=rules, normalize=normalize, lowercase=lower, max_chars=max_chars)
    assert "".join(clean_chunks(chunked(text, size), params)) == clean(text, params)


def test_byte_path_only_for_ascii_single_characters():
    assert ascii_translation(CleanParams()) is not None
    assert ascii_translation(CleanParams(replacements=(("a", "好"),))) is None
    assert ascii_translation(CleanParams(replacements=(("\r\n", " "),))) is None
    assert ascii_translation(CleanParams(replacements=(regex("a", "b"),))) is None
    assert ascii_translation(CleanParams(lowercase=True)) is None
    table = ascii_translation(CleanParams(replacements=(("a", "b"), ("b", "c"))))
    assert b"abc".translate(table) == b"ccc"
    table = ascii_translation(CleanParams(replacements=(("b", "c"), ("a", "b"))))
    assert b"".join(clean_utf8([b"ab", b"c"], table, None)) == b"bcc"


def test_a_final_sigma_across_a_chunk_boundary():
    params = CleanParams(lowercase=True, replacements=(), max_chars=None)
    text = "ΟΔΟΣ ΑΣA ΑΣ 1ΑΣ"
    assert clean(text, params) == "οδος ασa ας 1ας"
    for size in range(1, 6):
        assert "".join(clean_chunks([text[i : i + size] for i in range(0, len(text), size)], params)) == clean(
            text, params
        )


def test_a_pattern_that_backtracks_without_end_is_refused_at_its_time_limit():
    """Was: `(a+)+b` on 30,000 a's never ended (and ignored the first Ctrl-C)."""
    params = CleanParams(replacements=[regex("(a+)+b", "x")], max_chars=None, regex_timeout=0.2)
    with pytest.raises(CleanError, match=r"regex '\(a\+\)\+b' ran past --regex-timeout 0.2 s on 30,000 characters"):
        "".join(clean_chunks(["a" * 30_000], params))


def test_the_regex_time_limit_is_bounded_and_changes_no_key():
    with pytest.raises(ValueError, match="less than or equal to 60"):
        CleanParams(regex_timeout=61)
    assert keyed_params(CleanParams(regex_timeout=5)) == keyed_params(CleanParams())
    # The same bytes as `re` gives, scan by scan, with the limit on.
    params = CleanParams(replacements=[regex(r"(\w)(\w*)", r"\2\1")], max_chars=None, max_match=8)
    text = "the quick brown fox jumps over the lazy dog " * 50
    assert "".join(clean_chunks([text[i : i + 7] for i in range(0, len(text), 7)], params)) == clean(text, params)


def test_a_stop_asked_within_a_long_match_is_heard_at_once():
    """The first Ctrl-C stops any stage: a scan is waited for in tenths of a second, not until it ends (here it
    would run to its 30 s limit and end in the CleanError instead)."""
    import threading

    from tasks.errors import Interrupted

    asked = threading.Event()
    threading.Timer(0.5, asked.set).start()
    params = CleanParams(replacements=[regex("(a+)+b", "x")], max_chars=None, regex_timeout=30)
    with pytest.raises(Interrupted, match=r"stopped in a scan of regex '\(a\+\)\+b'; nothing was published"):
        "".join(clean_chunks(["a" * 30_000], params, asked.is_set))

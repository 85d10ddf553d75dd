"""The vocabulary's chart: every CJK glyph drawn, a valid PNG, the same bytes for the same vocabulary."""

import struct
import warnings

from artifacts.vocab_chart import frequency_chart
from tasks.vocab import VocabParams, build_vocab


def test_frequency_chart_renders_without_missing_glyphs(book_text, tmp_path):
    vocab = build_vocab(book_text, VocabParams())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frequency_chart(vocab, tmp_path / "a.png")
    assert not [w for w in caught if "missing from font" in str(w.message)]
    png = (tmp_path / "a.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (1000, 400)
    frequency_chart(vocab, tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes() == png

"""The charts: CJK glyphs drawn (not empty boxes), valid PNGs, the same bytes for the same data."""

import struct
import warnings

from matplotlib.ft2font import FT2Font

from tasks.plot import cjk_font, frequency_chart, perplexity_curve
from tasks.vocab import VocabParams, build_vocab


def test_the_cjk_font_has_every_symbol_of_the_lyrics(book_text):
    font = cjk_font()
    assert font is not None
    face = FT2Font(font.get_file())
    missing = [c for c in set(book_text) if c.strip() and face.get_char_index(ord(c)) == 0]
    assert missing == []


def test_frequency_chart_renders_without_missing_glyphs(book_text, tmp_path):
    vocab = build_vocab(book_text, VocabParams())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frequency_chart(vocab.tokens, vocab.counts.tolist(), tmp_path / "a.png")
    assert not [w for w in caught if "missing from font" in str(w.message)]
    png = (tmp_path / "a.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1000, 400)
    frequency_chart(vocab.tokens, vocab.counts.tolist(), tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes() == png


def test_perplexity_curve_with_validation(tmp_path):
    rows = [{"epoch": e, "perplexity": 100 / e, "val_perplexity": 120 / e} for e in range(1, 6)]
    perplexity_curve(rows, tmp_path / "c.png", title="rnn")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"

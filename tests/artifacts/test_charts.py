"""What the charts share: a CJK font with every glyph the lyrics need, and PNG bytes that depend on the data."""

import matplotlib.pyplot as plt
from matplotlib.ft2font import FT2Font

from artifacts.charts import cjk_font, new_figure, save_png


def test_the_cjk_font_has_every_symbol_of_the_lyrics(book_text):
    font = cjk_font()
    assert font is not None
    face = FT2Font(font.get_file())
    missing = [c for c in set(book_text) if c.strip() and face.get_char_index(ord(c)) == 0]
    assert missing == []


def test_the_same_figure_gives_the_same_bytes(tmp_path):
    for name in ("a.png", "b.png"):
        fig, ax = new_figure(3, 2)
        ax.plot([1, 2, 3], [3, 1, 2])
        save_png(fig, tmp_path / name)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert b"Software" not in (tmp_path / "a.png").read_bytes()
    assert not plt.get_fignums()

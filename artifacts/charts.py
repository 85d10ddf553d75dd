"""What the artifacts' charts share: matplotlib without a display, a CJK font, and PNG bytes that depend on
the data alone. Imported only when a chart is drawn (matplotlib takes a while to load)."""

from __future__ import annotations

import importlib.util
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402

CJK_FONT_FILE = "NotoSansCJKsc-Regular.otf"  # shipped by the mplfonts package


@cache
def cjk_font() -> font_manager.FontProperties | None:
    """A font with the CJK glyphs the corpus needs: matplotlib's own fonts would draw empty boxes."""
    spec = importlib.util.find_spec("mplfonts")
    for folder in spec.submodule_search_locations or [] if spec else []:
        path = Path(folder) / "fonts" / CJK_FONT_FILE
        if path.is_file():
            font_manager.fontManager.addfont(str(path))
            return font_manager.FontProperties(fname=str(path))
    warnings.warn("no CJK font found (install mplfonts): Chinese labels will render as boxes", stacklevel=2)
    return None


def new_figure(width: float, height: float) -> tuple[Any, Any]:
    return plt.subplots(figsize=(width, height), dpi=100)


def save_png(fig: Any, path: Path) -> None:
    # No timestamp or version in the file: the same data gives the same bytes.
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)

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
from matplotlib import font_manager, ticker  # noqa: E402

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


def comparison_chart(rows: list[dict[str, Any]], metric: str, path: Path) -> None:
    """Each model's perplexity per epoch (rows: label, epoch, perplexity), one line a model, log scale as the
    training curve's; the labels may name a corpus in Chinese, hence the CJK font."""
    fig, ax = new_figure(7, 4.5)
    for label in dict.fromkeys(row["label"] for row in rows):
        mine = [row for row in rows if row["label"] == label]
        ax.plot([r["epoch"] for r in mine], [r["perplexity"] for r in mine], marker="o", markersize=3, label=label)
    which = "validation" if metric == "val" else "training"
    ax.set(xlabel="epoch", ylabel=f"{which} perplexity", yscale="log", title=f"{which} perplexity per epoch")
    ax.grid(True, which="both", alpha=0.3)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))  # epochs are whole
    ax.yaxis.set_major_formatter(ticker.ScalarFormatter())  # 145, not 1.45 x 10^2
    ax.yaxis.set_minor_formatter(ticker.ScalarFormatter())
    font = cjk_font()
    legend = font.copy() if font is not None else font_manager.FontProperties()
    legend.set_size(8)
    ax.legend(prop=legend)
    fig.tight_layout()
    save_png(fig, path)

"""Plots written into artifacts, rendered without a display."""

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


def frequency_chart(tokens: list[str], counts: list[int], path: Path, top: int = 30) -> None:
    """The most frequent symbols with their counts, log scale; whitespace is drawn quoted, as ' '."""
    order = sorted(range(len(tokens)), key=lambda i: (-counts[i], i))[:top]
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    ax.bar(range(len(order)), [counts[i] for i in order], color="#4C72B0")
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(
        [tokens[i] if tokens[i].strip() else repr(tokens[i]) for i in order], fontproperties=cjk_font(), fontsize=12
    )
    ax.set(yscale="log", ylabel="count", title=f"the {len(order)} most frequent of {len(tokens):,} symbols")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    # Fixed margins: tight_layout measured every label again and took most of the chart's time.
    fig.subplots_adjust(left=0.07, right=0.99, top=0.91, bottom=0.1)
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def perplexity_curve(metrics: list[dict[str, Any]], path: Path, title: str) -> None:
    """Training perplexity per epoch, log scale (it falls from hundreds to about one)."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    epochs = [row["epoch"] for row in metrics]
    ax.plot(epochs, [row["perplexity"] for row in metrics], label="training")
    if any(row.get("val_perplexity") is not None for row in metrics):
        ax.plot(epochs, [row.get("val_perplexity") for row in metrics], label="validation")
    ax.set(xlabel="epoch", ylabel="perplexity", yscale="log", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    # No timestamp or version in the file: the same metrics give the same bytes.
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)

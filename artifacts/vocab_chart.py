"""The vocabulary's chart, `frequency.png`: a file of the vocab artifact, so it is keyed with it (and only
with it: the stages that read a vocabulary do not depend on how it is drawn)."""

from __future__ import annotations

from pathlib import Path

from artifacts.charts import cjk_font, new_figure, save_png
from tasks.vocab import Vocab


def frequency_chart(vocab: Vocab, path: Path, top: int = 30) -> None:
    """The most frequent symbols with their counts, log scale; whitespace is drawn quoted, as ' '."""
    tokens, counts = vocab.tokens, vocab.counts.tolist()
    order = sorted(range(len(tokens)), key=lambda i: (-counts[i], i))[:top]
    fig, ax = new_figure(10, 4)
    ax.bar(range(len(order)), [counts[i] for i in order], color="#4C72B0")
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(
        [tokens[i] if tokens[i].strip() else repr(tokens[i]) for i in order], fontproperties=cjk_font(), fontsize=12
    )
    ax.set(yscale="log", ylabel="count", title=f"the {len(order)} most frequent of {len(tokens):,} symbols")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    # Fixed margins: tight_layout measured every label again and took most of the chart's time.
    fig.subplots_adjust(left=0.07, right=0.99, top=0.91, bottom=0.1)
    save_png(fig, path)

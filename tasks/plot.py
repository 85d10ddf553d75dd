"""Plots written into artifacts, rendered without a display."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


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

"""`charflow inspect compare --publish`: the comparison's chart and table as Prefect artifacts, made by a small
flow run of their own (an artifact belongs to a run, so the UI lists it with the runs and under its key)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.publish import chart_markdown
from flows.run_page import artifact_link
from flows.run_words import markdown_table, text

COMPARISON_KEY = "model-comparison"


def comparison_markdown(chart: Path, metric: str, rows: list[dict[str, Any]]) -> str:
    """The chart inline, then a row per model with its perplexity at each epoch."""
    which = "validation" if metric == "val" else "training"
    epochs = sorted({r["epoch"] for r in rows})
    by = {(r["label"], r["epoch"]): r["perplexity"] for r in rows}
    table = [
        {"model": text(label), **{str(e): f"{by[(label, e)]:.3f}" if (label, e) in by else "" for e in epochs}}
        for label in dict.fromkeys(r["label"] for r in rows)
    ]
    return "\n\n".join([chart_markdown(chart, f"{which} perplexity per epoch"), markdown_table(table)])


@flow(name="compare")
def compare(chart: str, metric: str, rows: list[dict[str, Any]]) -> str:
    """Publish the comparison; its artifact's page."""
    made = create_markdown_artifact(
        key=COMPARISON_KEY,
        markdown=comparison_markdown(Path(chart), metric, rows),
        description=f"{len({r['model'] for r in rows})} models' perplexity per epoch (charflow inspect compare)",
    )
    return artifact_link(made)


def publish_comparison(chart: Path, metric: str, rows: list[dict[str, Any]]) -> str:
    return compare(chart=str(chart), metric=metric, rows=rows)

"""What a flow run shows in Prefect's UI: a summary per stage, the vocabulary's top symbols and chart, the
training metrics, curve and samples, under stable artifact keys."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pyarrow.parquet as pq
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from artifacts import inspect
from artifacts.model import CURVE_FILE, METRICS_FILE
from artifacts.store import ArtifactRef, Store
from artifacts.vocab import FREQUENCY_FILE
from flows.run_words import code, corpus_prefix, fenced, markdown_table, text

MAX_FILES_SHOWN = 20
MAX_SAMPLE_CHARS = 1500
# Whitespace tokens drawn so that a table cell is not empty (the Parquet keeps the characters themselves), in
# glyphs common fonts have: ␠ and ␍ rendered as empty boxes in Chromium with Debian's DejaVu and Noto fonts.
VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥"}


def visible(token: str) -> str:
    if token.isspace():
        return "".join(VISIBLE.get(ch, f"U+{ord(ch):04X}") for ch in token)
    return token


def shown_value(value: Any) -> str:
    """A parameter as a person writes it: a string bare, anything else as JSON."""
    return value if isinstance(value, str) and value else json.dumps(value, ensure_ascii=False)


def chart_markdown(path: Path, title: str) -> str:
    """A chart inline, as a data URI: the UI renders it without a URL the browser must reach."""
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"### {title}\n\n![{title}](data:image/png;base64,{encoded})"


def sample_json(view: dict[str, Any], key: str) -> str:
    """The decoded sample, a line per entry (a list of numbers stays on its line); cut at a line, and said so."""
    lines = [f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False, default=str)}" for k, v in view.items()]
    kept, size = [], 0
    for line in lines:
        if size + len(line) > MAX_SAMPLE_CHARS:
            kept.append(f"… {len(lines) - len(kept)} more, cut here: `charflow inspect show {key[:12]}` shows all")
            break
        kept.append(line if len(line) <= MAX_SAMPLE_CHARS else line[:MAX_SAMPLE_CHARS] + " …")
        size += len(line)
    return "\n".join(kept)


Published = list[tuple[str, UUID]]  # each artifact's key (less the corpus) and id, for the run summary's links


def publish(store: Store, ref: ArtifactRef, corpus: str | None = None) -> Published:
    """A summary per stage (parameters, key, rows, files, a decoded sample), the vocabulary's most frequent
    symbols and chart, the training metrics, curve and samples: under keys that start with the corpus's name,
    so that each corpus has its own timeline."""
    prefix = corpus_prefix(corpus)
    made: Published = []

    def markdown(key: str, text: str, description: str) -> None:
        made.append((key, create_markdown_artifact(key=prefix + key, markdown=text, description=description)))

    def table(key: str, rows: list[dict[str, Any]], description: str) -> None:
        made.append((key, create_table_artifact(key=prefix + key, table=rows, description=description)))

    entry = inspect.entry(ref)
    shown = inspect.show(store, entry)
    manifest, view = shown["manifest"], shown["view"]
    params = [{"parameter": k, "value": text(shown_value(v))} for k, v in manifest["params"].items()]
    files = [
        {
            "file": code(f"{ref.path}/{f['name']}"),
            "rows": "" if f["rows"] is None else f"{f['rows']:,}",
            "bytes": f"{f['size']:,}",
        }
        for f in manifest["files"]
    ]
    if len(files) > MAX_FILES_SHOWN:  # thousands of shards would make a page nobody reads
        more = len(files) - MAX_FILES_SHOWN
        files = [*files[:MAX_FILES_SHOWN], {"file": f"… and {more:,} more files", "rows": "", "bytes": ""}]
    summary = "\n\n".join(
        [
            f"## {ref.stage} `{ref.key[:12]}`" + (" (cached)" if ref.cache_hit else ""),
            f"Content key `{ref.key}`, created {manifest['created']}.",
            markdown_table(params) or "No parameters.",
            markdown_table(files),
            fenced(sample_json(view, ref.key)),
        ]
    )
    markdown(f"{ref.stage}-summary", summary, f"{ref.stage} artifact")
    if ref.stage == "vocab":
        top = [{**row, "token": visible(row["token"])} for row in view["most_frequent"]]
        table("vocab-top-symbols", top, "most frequent symbols (␣ a space)")
        chart = chart_markdown(ref.path / FREQUENCY_FILE, f"the most frequent symbols, vocab {ref.key[:12]}")
        markdown("vocab-frequency-chart", chart, "frequency.png")
    if ref.stage == "train":
        every = pq.ParquetFile(ref.path / METRICS_FILE).read().to_pylist()  # the view shows ten; the table every epoch
        metrics = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()} for m in every]
        table(
            "training-metrics",
            metrics,
            f"perplexity per epoch, all {len(metrics)} (rounded here; metrics.parquet keeps full precision)",
        )
        markdown(
            "training-perplexity-chart",
            chart_markdown(ref.path / CURVE_FILE, f"perplexity per epoch, model {ref.key[:12]}"),
            "perplexity.png",
        )
        samples = "\n".join(f"- epoch {s['epoch']}, {code(s['prefix'])}: {text(s['text'])}" for s in view["samples"])
        markdown("training-samples", samples or "No samples.", "greedy samples")
    return made


def publish_table(key: str, rows: list[dict[str, Any]], description: str) -> None:
    create_table_artifact(key=key, table=rows, description=description)

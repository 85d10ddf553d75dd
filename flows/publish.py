"""What a flow run shows in Prefect's UI: a summary per stage, the vocabulary's top symbols, the training
metrics and samples, under stable artifact keys."""

from __future__ import annotations

import json
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from artifacts import inspect
from artifacts.store import ArtifactRef, Store

MAX_FILES_SHOWN = 20


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(str(row[k]).replace("|", "\\|") for k in head) + " |" for row in rows]
    return "\n".join(lines)


def publish(store: Store, ref: ArtifactRef) -> None:
    """A summary per stage (parameters, key, rows, files, a decoded sample), the vocabulary's most frequent
    symbols, the training metrics and samples."""
    entry = inspect.entry(ref)
    shown = inspect.show(store, entry)
    manifest, view = shown["manifest"], shown["view"]
    params = [{"parameter": k, "value": json.dumps(v, ensure_ascii=False)} for k, v in manifest["params"].items()]
    files = [{"file": f"`{ref.path}/{f['name']}`", "rows": f["rows"], "bytes": f["size"]} for f in manifest["files"]]
    if len(files) > MAX_FILES_SHOWN:  # thousands of shards would make a page nobody reads
        more = len(files) - MAX_FILES_SHOWN
        files = [*files[:MAX_FILES_SHOWN], {"file": f"… and {more:,} more files", "rows": "", "bytes": ""}]
    sample = json.dumps(view, ensure_ascii=False, indent=1, default=str)[:1500]
    markdown = "\n\n".join(
        [
            f"## {ref.stage} `{ref.key[:12]}`" + (" (cached)" if ref.cache_hit else ""),
            f"Content key `{ref.key}`, {entry.rows:,} rows, created {manifest['created']}.",
            markdown_table(params) or "No parameters.",
            markdown_table(files),
            f"```json\n{sample}\n```",
        ]
    )
    create_markdown_artifact(key=f"{ref.stage}-summary", markdown=markdown, description=f"{ref.stage} artifact")
    if ref.stage == "vocab":
        create_table_artifact(key="vocab-top-symbols", table=view["most_frequent"], description="most frequent symbols")
    if ref.stage == "train":
        metrics = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()} for m in view["metrics"]]
        create_table_artifact(key="training-metrics", table=metrics, description="perplexity per epoch")
        samples = "\n".join(f"- epoch {s['epoch']}, `{s['prefix']}`: {s['text']}" for s in view["samples"])
        create_markdown_artifact(
            key="training-samples", markdown=samples or "No samples.", description="greedy samples"
        )


def publish_table(key: str, rows: list[dict[str, Any]], description: str) -> None:
    create_table_artifact(key=key, table=rows, description=description)

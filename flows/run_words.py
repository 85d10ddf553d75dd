"""What a flow run's page says, in words: its name, the prefix of its corpus's artifact keys, the source as the
run takes it, and the summary that lists every stage. No Prefect: a command answered from the store and recorded
through the server's REST API (`flows/recorded.py`) says the same as a run of the flow."""

from __future__ import annotations

import hashlib
import html
import re
from typing import Any

from artifacts.store import ArtifactRef
from tasks.fetch import Located, corpus_name

# What makes markup anywhere in a line: a backslash, code, emphasis, links, strikethrough. '_' inside a word is no
# emphasis (CommonMark), so `jaychou_lyrics` stays as it is written; a table cell's '|' is `markdown_table`'s.
# What is markup only where a line starts ('#', '-', '1.') cannot start one here: line breaks become spaces.
_MARKUP = re.compile(r"([\\`*\[\]~])|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def text(value: Any) -> str:
    """A user's string (a corpus or file name, a parameter, a sample) as literal text in markdown: HTML and
    markdown syntax escaped, line breaks as spaces, so that nothing in it renders as markup or leaves a table."""
    escaped = html.escape(str(value), quote=False).replace("\r", " ").replace("\n", " ")
    return _MARKUP.sub(lambda m: "\\" + m.group(0), escaped)


def code(value: Any) -> str:
    """An inline code span holding `value` literally, whatever backticks it holds (a fence longer than any)."""
    value = str(value).replace("\r", " ").replace("\n", " ")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", value)), default=0) + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def fenced(value: str) -> str:
    """A code block holding `value`, which no line of it can close (a fence longer than any backtick run)."""
    fence = "`" * max(3, max((len(run) for run in re.findall(r"`+", value)), default=0) + 1)
    return f"{fence}\n{value}\n{fence}"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(str(row[k]).replace("|", "\\|") for k in head) + " |" for row in rows]
    return "\n".join(lines)


def corpus_prefix(corpus: str | None) -> str:
    """The start of a corpus's artifact keys: its name in Prefect's key alphabet (`[a-z0-9-]`), with a short
    hash of the name when more than `_` had to change (two names could then meet); none without a corpus."""
    if corpus is None:
        return ""
    slug = re.sub(r"[^a-z0-9]+", "-", corpus.lower()).strip("-") or "corpus"
    if slug != corpus.replace("_", "-"):
        slug += "-" + hashlib.sha256(corpus.encode("utf-8")).hexdigest()[:6]
    return f"{slug}-"


def resolved_source(located: Located) -> dict[str, Any]:
    """The source as the run takes it: the book's corpus spelled out where none was given, the name it gets."""
    return {"source": located.source, "name": located.name or corpus_name(located.source), "sha256": located.sha256}


def run_title(flow: str, corpus: str | None, version: int | None, last: ArtifactRef | None = None) -> str:
    """`train jaychou v3 · train 1f3a9c2b4d5e`: the flow, the corpus and version, the last stage and its key."""
    words = [flow]
    if corpus:
        words.append(corpus + (f" v{version}" if version else ""))
    if last is not None:
        words.append(f"· {last.stage} {last.key[:12]}")
    return " ".join(words)


def run_tags(corpus: str | None, version: int | None) -> list[str]:
    return [*([f"corpus:{corpus}"] if corpus else []), *([f"version:{version}"] if version else [])]


def summary_markdown(title: str, stages: dict[str, ArtifactRef], links: dict[str, list[tuple[str, str]]]) -> str:
    """Each stage's key, whether it was cached, and links (label, URL) to its artifacts."""
    rows = [
        {
            "stage": stage,
            "key": f"`{ref.key[:12]}`",
            "how": "cached" if ref.cache_hit else "computed",
            "artifacts": ", ".join(f"[{label}]({url})" for label, url in links.get(stage, [])),
        }
        for stage, ref in stages.items()
    ]
    return f"## {text(title)}\n\n{markdown_table(rows)}"


SUMMARY_KEY = "run-summary"  # after the corpus prefix
SUMMARY_DESCRIPTION = "every stage of this run, with links to its artifacts"

"""The documentation: every relative link resolves to a file, the screenshots are shown, the README stays short."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200

# `[text](target)` and `![alt](target)`, an optional "title" after the target.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCED = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
EXTERNAL = ("http://", "https://", "mailto:")


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), REPO / "benchmarks" / "README.md"]


def links(text: str) -> list[str]:
    """Link targets outside code: code blocks and spans may hold `x[i](y)` that is Python, not a link."""
    prose = INLINE_CODE.sub("", FENCED.sub("", text))
    return LINK.findall(prose)


def broken_links(document: Path) -> list[str]:
    broken = []
    for target in links(document.read_text(encoding="utf-8")):
        if target.startswith(EXTERNAL) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if not (document.parent / path).exists():
            broken.append(f"{document.relative_to(REPO)}: {target}")
    return broken


def test_links_finds_links_outside_code_only():
    text = 'See [a](docs/a.md#x), ![b](b.png "B") and `[c](c.md)`.\n```python\nd = e[1](f)\n```\n'

    assert links(text) == ["docs/a.md#x", "b.png"]


def test_every_relative_link_resolves():
    broken = [link for document in documents() for link in broken_links(document)]

    assert broken == [], "broken links:\n" + "\n".join(broken)


def test_every_screenshot_is_shown():
    shown = {
        (document.parent / target.split("#", 1)[0]).resolve()
        for document in documents()
        for target in links(document.read_text(encoding="utf-8"))
    }
    screenshots = sorted((REPO / "docs").glob("*.png"))

    assert [png.name for png in screenshots if png.resolve() not in shown] == []


def test_readme_is_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()

    assert len(lines) <= README_MAX_LINES

"""What can be told of a source in milliseconds, before any server starts or anything is written: a URL is
well formed, a local path exists and holds some text, a zip's members are there and within the cap, the first
bytes of a text decode. The same errors, in the same words, as ingest gives when it meets them later.

Not imported by the stages (their code is part of the artifacts' keys): a check made earlier changes no bytes.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from tasks.fetch import check_source
from tasks.ingest import IngestParams, _char_start, _open_zip, _wanted_zip_members, decode_member
from tasks.sources import IngestError, is_zip, text_files

HEAD_BYTES = 1 << 16  # decoded up front: a binary file is refused at once
MOST_FILES = 100  # of a folder, looked at up front (the rest when ingested)


def check_url(source: str) -> None:
    parts = urlsplit(source)
    if not parts.hostname:
        raise IngestError(f"{source}: not a valid URL (no host); pass http(s)://HOST/PATH or a local path")
    try:
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise IngestError(f"{source}: not a valid URL (bad port); pass http(s)://HOST[:PORT]/PATH") from None


def check_text_head(file: Path, params: IngestParams) -> None:
    with file.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
    if params.errors == "strict":
        decode_member(str(file), head[: _char_start(head)] if len(head) == HEAD_BYTES else head)


def check_zip(file: Path, params: IngestParams) -> None:
    with _open_zip(file) as archive:
        _wanted_zip_members(file, archive, params)


def check_before_work(source: str, params: IngestParams) -> None:
    if source.startswith(("http://", "https://")):
        check_url(source)
        return
    check_source(source)
    path = Path(source).expanduser()
    files = text_files(path, params.patterns) if path.is_dir() else [path]
    if path.is_dir() and not files:
        raise IngestError(
            f"{source}: the folder holds no text file matching {', '.join(params.patterns)}. "
            "Add text files or change --pattern."
        )
    if sum(file.stat().st_size for file in files) == 0:
        raise IngestError(f"{source}: no text at all (0 characters); pass a corpus with some text in it")
    for file in files[:MOST_FILES]:
        if is_zip(file):
            check_zip(file, params)
        elif file.stat().st_size:
            check_text_head(file, params)

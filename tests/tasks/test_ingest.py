"""Ingest: members read in a stable order, checked, decoded strictly with clear errors, zip safety."""

import hashlib
import zipfile

import pytest

from tasks.fetch import (
    DEFAULT_SHA256,
    DEFAULT_SIZE,
)
from tasks.ingest import DEFAULT_CHARS, IngestError, IngestParams
from tests.helpers import ingest_source

# What the seed notebook prints for corpus_chars[50:100].
NOTEBOOK_50_100 = "样的甜蜜\n让我开始乡相信命运\n感谢地心引力\n让我碰到你\n漂亮的让我面红的可爱女人\n温柔的让我心疼的可"
TEXT_SHA256 = "f0cab49f5d00e736c7201a0e2aa9c8dd72da1940c9491b309e4cc657be0faa48"


def test_lyrics_zip_gives_the_books_text(lyrics_zip, tmp_path):
    fetched, text = ingest_source(lyrics_zip, tmp_path, sha256=DEFAULT_SHA256)
    assert (fetched.kind, fetched.sha256, fetched.size) == ("zip", DEFAULT_SHA256, DEFAULT_SIZE)
    assert DEFAULT_SIZE == 52_607
    assert len(text) == DEFAULT_CHARS == 63_282
    assert text[50:100] == NOTEBOOK_50_100
    assert hashlib.sha256(text.encode()).hexdigest() == TEXT_SHA256
    assert fetched.name == "jaychou_lyrics"


def test_bom_is_dropped(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfhello")
    assert ingest_source(path, tmp_path)[1] == "hello"


def test_invalid_utf8_names_file_and_offset(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes("好".encode() + b"ok\xff rest")
    with pytest.raises(IngestError) as err:
        ingest_source(path, tmp_path)
    message = str(err.value)
    assert "bad.txt" in message and "byte offset 5" in message and "--decode-errors replace" in message
    _, text = ingest_source(path, tmp_path, IngestParams(errors="replace"))
    assert text == "好ok\ufffd rest"


def test_invalid_utf8_offset_counts_the_bom(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"\xef\xbb\xbfab\xc3")
    with pytest.raises(IngestError, match="byte offset 5"):
        ingest_source(path, tmp_path)


def test_directory_reads_text_files_sorted(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("second")
    (folder / "a.txt").write_text("first")
    (folder / "sub" / "c.txt").write_text("third")
    (folder / "skip.bin").write_bytes(b"\xff")
    fetched, text = ingest_source(folder, tmp_path)
    assert fetched.kind == "directory" and fetched.name == "corpus"
    assert text == "first\nsecond\nthird"


def make_zip(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_zip_members_sorted_and_filtered(tmp_path):
    archive = make_zip(tmp_path / "c.zip", {"b.txt": "B", "a.txt": "A", "img.png": b"\x89PNG"})
    assert ingest_source(archive, tmp_path)[1] == "A\nB"


def test_zip_path_escape_is_refused(tmp_path):
    archive = make_zip(tmp_path / "evil.zip", {"../../etc/evil.txt": "x"})
    with pytest.raises(IngestError, match="escapes the archive"):
        ingest_source(archive, tmp_path)


def test_zip_bomb_is_capped(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", {"big.txt": "0" * 1_000_000})
    with pytest.raises(IngestError, match="zip bomb"):
        ingest_source(archive, tmp_path, IngestParams(max_uncompressed_bytes=10_000))


def test_zip_without_text_member(tmp_path):
    archive = make_zip(tmp_path / "pics.zip", {"a.png": b"x"})
    with pytest.raises(IngestError, match=r"no text member matching \*\.txt \(members: a.png\)"):
        ingest_source(archive, tmp_path)


def test_corrupt_zip(tmp_path):
    path = tmp_path / "broken.zip"
    path.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(IngestError, match="not a readable zip archive"):
        ingest_source(path, tmp_path)

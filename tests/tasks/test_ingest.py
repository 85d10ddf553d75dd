"""Ingest: members read in a stable order, checked, decoded strictly with clear errors, zip safety."""

import hashlib
import zipfile

import pytest

from tasks import ingest as ingest_module
from tasks import sources
from tasks.fetch import DEFAULT_SHA256, DEFAULT_SIZE, fetch
from tasks.ingest import BOM, DEFAULT_CHARS, IngestParams, ingest, read_members
from tasks.sources import IngestError
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
    assert "bad.txt" in message
    assert "byte offset 5" in message
    assert "--decode-errors replace" in message
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
    assert fetched.kind == "directory"
    assert fetched.name == "corpus"
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


@pytest.mark.parametrize("block", [1, 2, 3, 5, 7, 1 << 22])
@pytest.mark.parametrize("kind", ["file", "zip", "folder", "bom", "replace"])
def test_streaming_ingest_equals_the_whole_decode_at_any_block_size(tmp_path, monkeypatch, block, kind):
    monkeypatch.setattr(sources, "BLOCK_BYTES", block)
    texts = {"a.txt": "想要有直升机\n😀 e\u0301 and ascii", "b.txt": "", "c.txt": "Σ∑ the end"}
    params = IngestParams(errors="replace" if kind == "replace" else "strict")
    if kind == "folder":
        source = tmp_path / "songs"
        source.mkdir()
        for name, text in texts.items():
            (source / name).write_text(text, encoding="utf-8")
    elif kind == "zip":
        source = tmp_path / "songs.zip"
        with zipfile.ZipFile(source, "w") as archive:
            for name, text in texts.items():
                archive.writestr(name, text)
    else:
        source = tmp_path / "song.txt"
        data = texts["a.txt"].encode()
        source.write_bytes(
            BOM + data if kind == "bom" else data[:5] + b"\xff" + data[5:] if kind == "replace" else data
        )
    fetched = fetch(str(source), tmp_path / "downloads")
    members = []
    streamed = b"".join(ingest_module.ingest_utf8(fetched, params, members)).decode("utf-8")
    assert streamed == ingest(read_members(fetched, params), params)
    assert [size for _, size in members] == [len(data) for _, data in read_members(fetched, params)]


def test_an_invalid_byte_across_blocks_is_named_by_its_offset(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "BLOCK_BYTES", 4)
    source = tmp_path / "song.txt"
    source.write_bytes(BOM + "想要有".encode() + b"\xe6\x83" + b"ab")  # a character cut short at offset 12
    fetched = fetch(str(source), tmp_path / "downloads")
    with pytest.raises(IngestError, match=r"song.txt: invalid UTF-8 at byte offset 12 \(bytes b'\\xe6\\x83ab'"):
        b"".join(ingest_module.ingest_utf8(fetched, IngestParams(), []))


def test_a_source_that_changes_while_streamed_is_refused(tmp_path):
    source = tmp_path / "song.txt"
    source.write_text("one", encoding="utf-8")
    fetched = fetch(str(source), tmp_path / "downloads")
    source.write_text("two", encoding="utf-8")
    with pytest.raises(IngestError, match="the source changed while it was being read; run again"):
        b"".join(ingest_module.ingest_utf8(fetched, IngestParams(), []))


def test_while_the_files_stat_is_unchanged_fetchs_digest_is_trusted(tmp_path, monkeypatch):
    """The source is not hashed a second time as ingest reads it; rewritten (even with the same bytes and
    size), it is."""

    class NoHashing:
        @staticmethod
        def sha256(*args):
            raise AssertionError("hashed again")

    source = tmp_path / "song.txt"
    source.write_text("想要有直升机", encoding="utf-8")
    fetched = fetch(str(source), tmp_path / "downloads")
    assert fetched.identity is not None
    monkeypatch.setattr(ingest_module, "hashlib", NoHashing)
    assert b"".join(ingest_module.ingest_utf8(fetched, IngestParams(), [])).decode() == "想要有直升机"
    source.write_text("想要有直升机", encoding="utf-8")  # the same bytes: a new ctime
    with pytest.raises(AssertionError, match="hashed again"):
        b"".join(ingest_module.ingest_utf8(fetched, IngestParams(), []))
    monkeypatch.undo()
    assert b"".join(ingest_module.ingest_utf8(fetched, IngestParams(), [])).decode() == "想要有直升机"


def test_a_source_written_to_while_read_unhashed_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "BLOCK_BYTES", 4)
    source = tmp_path / "song.txt"
    source.write_bytes(b"abcdefgh" * 4)
    fetched = fetch(str(source), tmp_path / "downloads")
    pieces = ingest_module.ingest_utf8(fetched, IngestParams(), [])
    next(pieces)
    with source.open("r+b") as fh:  # the same size, a byte changed where it was already read
        fh.write(b"X")
    with pytest.raises(IngestError, match="the source changed while it was being read; run again"):
        list(pieces)


def test_bad_bytes_past_the_first_look_name_the_path_given(tmp_path):
    """Was: `charflow prepare /usr/bin/ls` (text first, binary past the 64 KB looked at up front) said "ls:
    invalid UTF-8 ...", not the path given; a folder's member and an archive's are named under their source."""
    (tmp_path / "bin").mkdir()
    source = tmp_path / "bin" / "ls"
    source.write_bytes(b"a" * 70_000 + b"\xff\xfe")
    with zipfile.ZipFile(tmp_path / "songs.zip", "w") as archive:
        archive.writestr("bad.txt", b"ok\xff")
    for given, named in [
        (source, f"{source}: invalid UTF-8 at byte offset 70000"),
        (tmp_path / "bin", f"{tmp_path / 'bin'}/ls: invalid UTF-8 at byte offset 70000"),
        (tmp_path / "songs.zip", f"{tmp_path / 'songs.zip'}: bad.txt: invalid UTF-8 at byte offset 2"),
    ]:
        fetched = fetch(str(given), tmp_path / "downloads", patterns=("*",))
        with pytest.raises(IngestError) as refused:
            b"".join(ingest_module.ingest_utf8(fetched, IngestParams(patterns=("*",)), []))
        assert str(refused.value).startswith(named), str(refused.value)

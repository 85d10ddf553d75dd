import hashlib
import http.server
import threading
import zipfile
from functools import partial
from pathlib import Path

import pytest

from tasks.ingest import (
    DEFAULT_CHARS,
    DEFAULT_CORPUS,
    DEFAULT_SHA256,
    DEFAULT_SIZE,
    DEFAULT_URL,
    IngestError,
    IngestParams,
    corpus_name,
    fetch,
    ingest,
    read_members,
    resolve_source,
)

# What the seed notebook prints for corpus_chars[50:100].
NOTEBOOK_50_100 = "样的甜蜜\n让我开始乡相信命运\n感谢地心引力\n让我碰到你\n漂亮的让我面红的可爱女人\n温柔的让我心疼的可"
TEXT_SHA256 = "f0cab49f5d00e736c7201a0e2aa9c8dd72da1940c9491b309e4cc657be0faa48"


def ingest_source(source, tmp_path, params=IngestParams(), sha256=None):
    fetched = fetch(str(source), tmp_path / "downloads", sha256, params.patterns)
    return fetched, ingest(read_members(fetched, params), params)


def test_lyrics_zip_gives_the_books_text(lyrics_zip, tmp_path):
    fetched, text = ingest_source(lyrics_zip, tmp_path, sha256=DEFAULT_SHA256)
    assert (fetched.kind, fetched.sha256, fetched.size) == ("zip", DEFAULT_SHA256, DEFAULT_SIZE)
    assert DEFAULT_SIZE == 52_607
    assert len(text) == DEFAULT_CHARS == 63_282
    assert text[50:100] == NOTEBOOK_50_100
    assert hashlib.sha256(text.encode()).hexdigest() == TEXT_SHA256
    assert fetched.name == "jaychou_lyrics"


def test_default_source_prefers_a_local_copy_and_pins_the_digest(lyrics_zip, tmp_path):
    located = resolve_source(None, search=[tmp_path, lyrics_zip.parent])
    assert located.source == str(lyrics_zip)
    assert (located.sha256, located.name) == (DEFAULT_SHA256, DEFAULT_CORPUS)
    assert resolve_source(None, search=[tmp_path]).source == DEFAULT_URL


def test_sha256_mismatch_shows_both_digests(lyrics_zip, tmp_path):
    wrong = "0" * 64
    with pytest.raises(IngestError) as err:
        fetch(str(lyrics_zip), tmp_path, wrong)
    assert wrong in str(err.value) and DEFAULT_SHA256 in str(err.value)


def test_missing_source_is_named(tmp_path):
    with pytest.raises(IngestError, match="no such file or directory"):
        fetch(str(tmp_path / "nope.txt"), tmp_path)


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


def test_empty_directory_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match="no text file matching"):
        fetch(str(tmp_path / "empty"), tmp_path)


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


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_is_streamed_verified_and_cached(lyrics_zip, tmp_path, http_root):
    root, base = http_root
    (root / "jaychou_lyrics.txt.zip").write_bytes(lyrics_zip.read_bytes())
    url = f"{base}/jaychou_lyrics.txt.zip"
    fetched, text = ingest_source(url, tmp_path, sha256=DEFAULT_SHA256)
    assert (fetched.kind, fetched.sha256, len(text)) == ("zip", DEFAULT_SHA256, 63_282)
    # A pinned digest already downloaded is not fetched again.
    (root / "jaychou_lyrics.txt.zip").unlink()
    assert fetch(url, tmp_path / "downloads", DEFAULT_SHA256).sha256 == DEFAULT_SHA256


def test_url_digest_mismatch_keeps_nothing(lyrics_zip, tmp_path, http_root):
    root, base = http_root
    (root / "c.txt").write_text("hello")
    with pytest.raises(IngestError, match="sha256 mismatch"):
        fetch(f"{base}/c.txt", tmp_path / "downloads", "1" * 64)
    assert list((tmp_path / "downloads").iterdir()) == []


def test_url_not_found(tmp_path, http_root):
    _, base = http_root
    with pytest.raises(IngestError, match="download failed"):
        fetch(f"{base}/missing.txt", tmp_path / "downloads")


@pytest.mark.parametrize(
    "source,name",
    [
        ("a/jaychou_lyrics.txt.zip", "jaychou_lyrics"),
        ("x/poems.txt", "poems"),
        ("https://h/p/songs.zip?x=1", "songs"),
        ("lyrics/", "lyrics"),
    ],
)
def test_corpus_name(source, name):
    assert corpus_name(source) == name


def test_reingest_sources_expand_to_one_corpus_per_file(tmp_path):
    from tasks.ingest import expand_sources

    folder = tmp_path / "corpora"
    folder.mkdir()
    (folder / "b.txt").write_text("b")
    (folder / "a.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    (folder / "notes.bin").write_bytes(b"\0")
    (tmp_path / "c.txt").write_text("c")
    found = expand_sources([str(folder), str(tmp_path / "*.txt"), "https://host/x/poems.txt", str(folder / "b.txt")])
    assert [(Path(f.source).name if not f.source.startswith("http") else f.source, f.name) for f in found] == [
        ("a.zip", "a"),
        ("b.txt", "b"),
        ("c.txt", "c"),
        ("https://host/x/poems.txt", "poems"),
    ]
    with pytest.raises(IngestError, match="nowhere: no such file, folder or matching path; fix the reingest sources"):
        expand_sources([str(tmp_path / "nowhere")])

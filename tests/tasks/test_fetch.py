"""Fetch: the default corpus pinned, local paths and URLs digested, names, and re-ingestion's sources."""

import hashlib
import http.server
import json
import os
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from tasks import sources
from tasks.fetch import (
    DEFAULT_CORPUS,
    DEFAULT_SHA256,
    DEFAULT_URL,
    DIGESTS,
    Located,
    check_corpus_name,
    corpus_name,
    expand_sources,
    fetch,
    resolve_source,
)
from tasks.sources import DigestCache, IngestError
from tests.helpers import ingest_source


def test_default_source_prefers_a_local_copy_and_pins_the_digest(lyrics_zip, tmp_path):
    located = resolve_source(None, search=[tmp_path, lyrics_zip.parent])
    assert located.source == str(lyrics_zip)
    assert (located.sha256, located.name) == (DEFAULT_SHA256, DEFAULT_CORPUS)
    assert resolve_source(None, search=[tmp_path]).source == DEFAULT_URL


def test_sha256_mismatch_shows_both_digests(lyrics_zip, tmp_path):
    wrong = "0" * 64
    with pytest.raises(IngestError) as err:
        fetch(str(lyrics_zip), tmp_path, wrong)
    assert wrong in str(err.value)
    assert DEFAULT_SHA256 in str(err.value)


def test_missing_source_is_named(tmp_path):
    with pytest.raises(IngestError, match="no such file or directory"):
        fetch(str(tmp_path / "nope.txt"), tmp_path)


def test_empty_directory_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match="no text file matching"):
        fetch(str(tmp_path / "empty"), tmp_path)


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
    ("source", "name"),
    [
        ("a/jaychou_lyrics.txt.zip", "jaychou_lyrics"),
        ("x/poems.txt", "poems"),
        ("https://h/p/songs.zip?x=1", "songs"),
        ("lyrics/", "lyrics"),
        # File names keep working as names (spaces, CJK); what a reference could not hold becomes '_'.
        ("x/周杰伦 歌词.txt", "周杰伦 歌词"),
        ("x/songs@2.txt", "songs_2"),
        ("x/tab\there.txt", "tab_here"),
        ("x/ .txt", "corpus"),
    ],
)
def test_corpus_name(source, name):
    assert corpus_name(source) == name
    assert check_corpus_name(name) == name


@pytest.mark.parametrize("name", ["a/b@1", "a@b", "a\\b", " padded", "x\x00y", "..", "n" * 129, ""])
def test_a_name_no_reference_could_reach_is_refused(name):
    with pytest.raises(ValueError, match="cannot be a corpus name"):
        Located(source="x.txt", name=name)


def test_reingest_sources_expand_to_one_corpus_per_file(tmp_path):

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


def test_a_local_sources_digest_is_reused_while_the_file_is_unchanged(tmp_path, monkeypatch):
    song = tmp_path / "song.txt"
    song.write_text("la la la", encoding="utf-8")
    first = fetch(str(song), tmp_path / "downloads")

    def no_reading(path, cache=None):
        raise AssertionError(f"{path} was read again")

    with monkeypatch.context() as patched:
        patched.setattr(sources, "sha256_file", no_reading)
        assert fetch(str(song), tmp_path / "downloads").sha256 == first.sha256
    song.write_text("la la li", encoding="utf-8")  # same size: its mtime and ctime tell
    assert fetch(str(song), tmp_path / "downloads").sha256 == hashlib.sha256(b"la la li").hexdigest()


def test_a_folders_digests_are_saved_once_and_merge_with_another_runs(tmp_path, monkeypatch):
    folder = tmp_path / "songs"
    folder.mkdir()
    for name in "abc":
        (folder / f"{name}.txt").write_text(name * 3, encoding="utf-8")
    downloads = tmp_path / "downloads"
    other = DigestCache(downloads / DIGESTS)  # another run, started before, saving after
    lone = tmp_path / "lone.txt"
    lone.write_text("x", encoding="utf-8")
    other.sha256(lone)
    saves = []
    real_replace = os.replace
    monkeypatch.setattr("tasks.sources.os.replace", lambda a, b: (saves.append(b), real_replace(a, b)))
    fetch(str(folder), downloads)
    other.save()
    assert saves == [downloads / DIGESTS] * 2  # one write for three files, one for the other run
    saved = json.loads((downloads / DIGESTS).read_text())
    assert sorted(Path(k).name for k in saved) == ["a.txt", "b.txt", "c.txt", "lone.txt"]


class Counting(http.server.SimpleHTTPRequestHandler):
    codes: list[int] = []

    def log_request(self, code="-", size="-"):
        Counting.codes.append(int(code))


def test_a_url_is_revalidated_with_a_conditional_request(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "c.txt").write_text("hello")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Counting, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/c.txt"
    try:
        Counting.codes = []
        first = fetch(url, tmp_path / "downloads")
        again = fetch(url, tmp_path / "downloads")
        assert (first.path, first.sha256) == (again.path, again.sha256)
        assert Counting.codes == [200, 304]
        (root / "c.txt").write_text("hello, again")
        os.utime(root / "c.txt", (time.time() + 10, time.time() + 10))
        changed = fetch(url, tmp_path / "downloads")
        assert changed.sha256 == hashlib.sha256(b"hello, again").hexdigest()
        assert Counting.codes[-1] == 200
    finally:
        server.shutdown()
        server.server_close()

"""The text artifact: chunks re-cut to a bounded size, characters counted on UTF-8 without decoding, and
read back exactly, astral characters included."""

import pyarrow.parquet as pq

from artifacts import text
from artifacts.text import TEXT_FILE, iter_text, iter_text_utf8, read_text, write_text, write_text_utf8

SAMPLE = "想要有直升机 😀 and ascii " * 5


def test_chunks_are_recut_and_read_back_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(text, "TEXT_CHUNK_CHARS", 7)
    assert write_text(tmp_path, [SAMPLE[:10], SAMPLE[10:]], {"stage": "test"}) == len(SAMPLE)
    rows = pq.read_table(tmp_path / TEXT_FILE).to_pylist()
    assert [r["chunk"] for r in rows] == list(range(len(rows)))
    assert all(len(r["text"]) <= 7 for r in rows)
    assert read_text(tmp_path) == SAMPLE
    assert "".join(iter_text(tmp_path)) == SAMPLE
    assert b"".join(iter_text_utf8(tmp_path)).decode("utf-8") == SAMPLE


def test_utf8_chunks_are_counted_in_characters(tmp_path):
    chunks = [SAMPLE[:9].encode("utf-8"), SAMPLE[9:].encode("utf-8")]
    assert write_text_utf8(tmp_path, chunks, {}) == len(SAMPLE)
    assert list(iter_text_utf8(tmp_path)) == chunks
    assert read_text(tmp_path) == SAMPLE

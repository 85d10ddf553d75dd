"""A many-file corpus counted member by member adds up to the count of the whole cleaned corpus, exactly:
an empty member, a byte-order mark, CRLF lines, a folder and a zip, strict and replaced."""

import zipfile

import numpy as np
import pytest

from tasks.clean import CleanParams, clean
from tasks.ingest import BOM, IngestParams
from tasks.members import count_member, counted_table, joined_counts, member_names
from tasks.sources import IngestError
from tasks.vocab import count_code_points
from tests.helpers import ingest_source

WHOLE = CleanParams(max_chars=None)
MEMBERS = {
    "a.txt": "分开\r\n的话 abc\n".encode(),
    "b/empty.txt": b"",
    "b/c.txt": BOM + "我想大声宣布\n对你依依不舍".encode(),
    "d.txt": b"last line, no newline",
}


def counted(source, tmp_path, params: IngestParams = IngestParams()) -> tuple[np.ndarray, np.ndarray]:
    """(the members' joined counts, the count of the cleaned ingested text)."""
    fetched, text = ingest_source(source, tmp_path / "fetch", params)
    table = counted_table(WHOLE)
    members = [count_member(fetched, params, table, name) for name in member_names(fetched, params)]
    return joined_counts(fetched, members, table), count_code_points([clean(text, WHOLE)])


def test_a_folders_members_add_up_to_the_cleaned_corpus(tmp_path):
    folder = tmp_path / "corpus"
    for name, data in MEMBERS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    joined, whole = counted(folder, tmp_path)
    np.testing.assert_array_equal(joined, whole)
    # a.txt, b/c.txt, b/empty.txt, d.txt: three newlines between them, cleaned to spaces like the rest.
    assert joined.sum() == len("分开  的话 abc ") + len("我想大声宣布 对你依依不舍") + len("last line, no newline") + 3


def test_a_zips_members_add_up_to_the_cleaned_corpus(tmp_path):
    archive = tmp_path / "corpus.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in MEMBERS.items():
            zf.writestr(name, data)
    joined, whole = counted(archive, tmp_path)
    np.testing.assert_array_equal(joined, whole)


def test_replaced_bytes_count_as_the_replacement_character(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"ok\xff\xfe")
    (folder / "b.txt").write_bytes("好".encode())
    joined, whole = counted(folder, tmp_path, IngestParams(errors="replace"))
    np.testing.assert_array_equal(joined, whole)
    assert joined[0xFFFD] == 2


def test_only_a_per_byte_cleaning_that_keeps_every_character_is_counted_apart():
    assert counted_table(CleanParams(max_chars=None)) is not None
    assert counted_table(CleanParams()) is None  # the book's first 10,000 characters
    assert counted_table(CleanParams(max_chars=None, lowercase=True)) is None


def test_a_file_changed_after_the_fetch_is_refused(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("one")
    (folder / "b.txt").write_text("two")
    fetched, _ = ingest_source(folder, tmp_path / "fetch")
    (folder / "b.txt").write_text("TWO")
    table = counted_table(WHOLE)
    members = [count_member(fetched, IngestParams(), table, name) for name in member_names(fetched, IngestParams())]
    with pytest.raises(IngestError, match="the source changed while it was being read; run again"):
        joined_counts(fetched, members, table)

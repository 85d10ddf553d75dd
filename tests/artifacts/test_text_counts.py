"""A text's code point counts from two threads: the same counts as the decoded text, whatever the split, and a
torn file is an error from the thread that met it."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from artifacts.text import TEXT_FILE, iter_text, write_text_utf8
from artifacts.text_counts import count_text, split_groups
from tasks.vocab import count_code_points

# The astral character only in the later rows: the second thread's counts are longer than the first's.
ROWS = ["想要有直升机 ", "abc\n", "好 ascii", "直升机 😀 ", "😀😀 z"]


@pytest.fixture
def text(tmp_path):
    write_text_utf8(tmp_path, [row.encode("utf-8") for row in ROWS], {})
    assert pq.ParquetFile(tmp_path / TEXT_FILE).metadata.num_row_groups == len(ROWS)
    return tmp_path


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_counts_from_threads_equal_the_decoded_texts(text, threads):
    expected = count_code_points(iter_text(text))
    assert expected[ord("😀")] == 3
    assert expected[ord("直")] == 2
    np.testing.assert_array_equal(count_text(text, threads=threads, compiled_min_bytes=0), expected)
    np.testing.assert_array_equal(count_text(text, threads=threads), expected)  # small: decoded as strings


def test_the_split_covers_every_row_group_once_in_order(text):
    for parts in (1, 2, 3, 8):
        ranges = split_groups(text, parts)
        assert [g for r in ranges for g in r] == list(range(len(ROWS)))
        assert all(len(r) for r in ranges)
        assert len(ranges) == min(parts, len(ROWS))
    # Row groups of 105, 90, 95, 101 and 96 bytes: the first part stops before it passes half of 487.
    assert split_groups(text, 2) == [range(0, 2), range(2, 5)]


def test_meanwhile_runs_while_the_threads_count(text):
    ran = []
    count_text(text, meanwhile=lambda: ran.append(True), compiled_min_bytes=0)
    count_text(text, meanwhile=lambda: ran.append(True))
    assert ran == [True, True]


def test_a_torn_page_is_an_error_from_the_thread_that_read_it(text):
    # The last row group's page header torn: only the second thread, which reads the later rows, meets it.
    offset = pq.ParquetFile(text / TEXT_FILE).metadata.row_group(len(ROWS) - 1).column(1).data_page_offset
    with (text / TEXT_FILE).open("r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * 8)
    with pytest.raises(OSError, match="Deserializing page header failed"):
        count_text(text, compiled_min_bytes=0)

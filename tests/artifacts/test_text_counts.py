"""A text's code point counts with a helper process: the same counts as one process, and a helper that fails
or is killed is one clear error."""

import os
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from artifacts.text import TEXT_FILE, iter_text, write_text_utf8
from artifacts.text_counts import HelperError, count_text
from tasks.vocab import count_code_points

# The astral character only in the later rows: the helper's counts are longer than the parent's.
ROWS = ["想要有直升机 ", "abc\n", "好 ascii", "直升机 😀 ", "😀😀 z"]


@pytest.fixture
def text(tmp_path) -> Path:
    write_text_utf8(tmp_path, [row.encode("utf-8") for row in ROWS], {})
    assert pq.ParquetFile(tmp_path / TEXT_FILE).metadata.num_row_groups == len(ROWS)
    return tmp_path


def all_children() -> set[int]:
    pids = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        pids.update(int(pid) for pid in (task / "children").read_text().split())
    return pids


@pytest.fixture
def children() -> Callable[[], set[int]]:
    """This process's children, less those that earlier tests left running."""
    earlier = all_children()
    return lambda: all_children() - earlier


def test_counts_with_a_helper_equal_counts_in_one_process(text, children):
    expected = count_code_points(iter_text(text))
    assert expected[ord("😀")] == 3 and expected[ord("直")] == 2
    started = []
    with_helper = count_text(text, meanwhile=lambda: started.extend(children()), helper_min_bytes=0)
    assert len(started) == 1  # a helper did run
    np.testing.assert_array_equal(with_helper, expected)
    alone = count_text(text, meanwhile=lambda: started.extend(children()))
    assert len(started) == 1  # small: no helper
    np.testing.assert_array_equal(alone, expected)


def test_a_killed_helper_is_one_clear_error(text, children):
    def kill() -> None:
        for pid in children():
            os.kill(pid, signal.SIGKILL)
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead before the parent writes to it

    with pytest.raises(HelperError, match=r"counting the characters of .* was killed by SIGKILL; run again"):
        count_text(text, meanwhile=kill, helper_min_bytes=0)
    assert children() == set()


def test_a_helper_that_fails_names_its_error(text, children):
    # The last row group's page header torn: only the helper, which reads the later rows, meets it.
    offset = pq.ParquetFile(text / TEXT_FILE).metadata.row_group(len(ROWS) - 1).column(1).data_page_offset
    with (text / TEXT_FILE).open("r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * 8)
    with pytest.raises(HelperError, match=r"characters of .* failed: Deserializing page header failed; check the text"):
        count_text(text, helper_min_bytes=0)
    assert children() == set()


def test_the_helper_does_not_get_the_terminals_ctrl_c(text, children):
    """A first Ctrl-C lets the running stage finish: the helper is outside the terminal's process group."""
    sessions = []
    count_text(text, meanwhile=lambda: sessions.extend(os.getsid(pid) for pid in children()), helper_min_bytes=0)
    assert sessions and os.getsid(0) not in sessions


def test_a_users_own_tasks_module_does_not_shadow_the_helpers(text, tmp_path, monkeypatch):
    """Run from a Prefect project folder with its own `tasks.py`: the helper still imports charflow's."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "tasks.py").write_text("raise ImportError('the user tasks.py')\n")
    monkeypatch.chdir(project)
    np.testing.assert_array_equal(count_text(text, helper_min_bytes=0), count_code_points(iter_text(text)))

"""The code point counts of a text artifact, its later row groups counted by a second process.

Decoding UTF-8 holds the GIL, so a thread cannot share the work: a fresh interpreter does (not a fork, which
would copy the locks of Prefect's threads). Counts are sums, so the split changes no byte of the vocabulary.

    python -m artifacts.text_counts FOLDER   (the helper: reads its first row group on stdin, writes int64 counts)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from artifacts.text import group_bytes, iter_text
from tasks.errors import CharflowError
from tasks.vocab import add_counts, count_code_points

# A helper costs 0.3 s to start and saves half of 1.8 s per GB: below this it does not pay.
HELPER_MIN_BYTES = 64 << 20
HELPER_START_SECONDS = 0.3  # an interpreter, numpy and pyarrow (2 cores, 2026)
COUNT_BYTES_PER_SECOND = 550e6  # UTF-8 decoded and counted by one core
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class HelperError(CharflowError, RuntimeError):
    """The second process failed."""


def _nothing() -> None:
    pass


def count_text(
    folder: Path, meanwhile: Callable[[], None] = _nothing, helper_min_bytes: int = HELPER_MIN_BYTES
) -> np.ndarray:
    """Occurrences of each code point in the text: (max code point + 1,) int64. `meanwhile` runs while the
    helper starts (a slow import that the same core would otherwise wait for)."""
    sizes = group_bytes(folder)
    if sum(sizes) < helper_min_bytes or len(sizes) < 2:
        meanwhile()
        return count_code_points(iter_text(folder))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    # -P: not the working folder first on the path, where a user's own `tasks.py` would shadow ours.
    command = [sys.executable, "-P", "-m", "artifacts.text_counts", str(folder.resolve())]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    # Its own session: a Ctrl-C at the terminal asks charflow to stop after this stage, which the helper must
    # not cut short; if this process stops sooner, it kills the helper on its way out.
    with subprocess.Popen(command, env=env, start_new_session=True, **pipes) as helper:
        try:
            started = time.perf_counter()
            meanwhile()
            first = _split(sizes, lag=max(HELPER_START_SECONDS - (time.perf_counter() - started), 0))
            try:
                helper.stdin.write(b"%d\n" % first)
                helper.stdin.flush()  # communicate closes it
            except BrokenPipeError:
                pass  # the helper is gone: its exit status says why, below
            mine = count_code_points(iter_text(folder, range(first)))
            out, err = helper.communicate()
        finally:
            if helper.poll() is None:
                helper.kill()
                helper.wait()
    if helper.returncode:
        raise HelperError(f"the process counting the characters of {folder} {_why(helper.returncode, err)}")
    return add_counts(mine, np.frombuffer(out, dtype="<i8"))


def _split(sizes: list[int], lag: float) -> int:
    """The first row group the helper counts: each process gets half the bytes, this one more by what it
    counts while the helper is still starting."""
    mine = (sum(sizes) + lag * COUNT_BYTES_PER_SECOND) / 2
    return min(max(int(np.searchsorted(np.cumsum(sizes), mine)), 1), len(sizes) - 1)


def _why(returncode: int, err: bytes) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:  # a real-time signal has no name
            name = f"signal {-returncode}"
        return f"was killed by {name}; run again"
    lines = err.decode("utf-8", "replace").strip().splitlines()
    last = lines[-1] if lines else f"exit status {returncode}"
    return f"failed: {last.rstrip('.')}; check the text with `charflow inspect verify`"


def main(argv: list[str]) -> None:
    folder = Path(argv[0])
    first = int(sys.stdin.readline())  # sent once the parent knows how long it was busy
    counts = count_code_points(iter_text(folder, range(first, len(group_bytes(folder)))))
    sys.stdout.buffer.write(counts.astype("<i8").tobytes())  # if the parent was killed: a broken pipe, and out


if __name__ == "__main__":
    main(sys.argv[1:])

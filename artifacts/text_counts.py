"""The code point counts of a text artifact; from COMPILED_MIN_BYTES, counted by two threads over halves of its
row groups.

The compiled counting loop lets go of the GIL (tasks.utf8), so the threads use both cores; counts are sums,
so the split changes no byte of the vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from artifacts.text import group_bytes, iter_text, iter_text_arrays
from tasks.vocab import add_counts, count_code_points

THREADS = 2
# Smaller texts are decoded as Python strings: loading numba and its compiled loops (0.35 s) would cost them
# more than it saves (1 ns a byte in vocab and encode together, 2 cores, 2026).
COMPILED_MIN_BYTES = 128 << 20


def _nothing() -> None:
    pass


def count_text(
    folder: Path,
    meanwhile: Callable[[], None] = _nothing,
    threads: int = THREADS,
    compiled_min_bytes: int | None = None,
) -> np.ndarray:
    """Occurrences of each code point in the text: (max code point + 1,) int64. `meanwhile` runs on this thread
    while the others count (a slow import, say)."""
    if not compiled_pays(folder, compiled_min_bytes):
        meanwhile()
        return count_code_points(iter_text(folder))
    from tasks.utf8 import count_utf8

    with ThreadPoolExecutor(threads, thread_name_prefix="count-text") as pool:
        counted = [pool.submit(count_utf8, iter_text_arrays(folder, part)) for part in split_groups(folder, threads)]
        meanwhile()
        total = np.zeros(0, dtype=np.int64)
        for future in counted:
            total = add_counts(total, future.result())
    return total


def compiled_pays(folder: Path, minimum: int | None = None) -> bool:
    """Whether the text is large enough (COMPILED_MIN_BYTES, unless `minimum`) for the compiled loops."""
    return sum(group_bytes(folder)) >= (COMPILED_MIN_BYTES if minimum is None else minimum)


def split_groups(folder: Path, parts: int) -> list[range]:
    """Consecutive ranges of the text's row groups, none empty, each ending where the bytes so far would
    pass its share of the whole."""
    sizes = group_bytes(folder)
    ends = np.searchsorted(np.cumsum(sizes), np.arange(1, parts) * sum(sizes) / parts, side="right")
    bounds = sorted({0, *ends.tolist(), len(sizes)})
    return [range(start, end) for start, end in zip(bounds[:-1], bounds[1:], strict=True)]

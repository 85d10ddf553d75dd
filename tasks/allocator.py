"""glibc's malloc, told to keep the memory it frees for the next allocation.

The stages allocate and free a few MB per chunk. By default each such block is a fresh mmap, whose pages the
kernel clears again (and a virtual machine's host backs again) on first touch: 0.5 s per GB of text on
2 cores (2026). Kept, a block is reused warm. Called by the stages that work on a large text (from
COMPILED_MIN_BYTES), where it pays; smaller ones keep glibc's defaults. Training and evaluation call it too: a
CPU step's logits and their gradients (batch × num_steps × vocab floats, 4.6 MB at the book's settings) were
page-faulted in afresh every step, 600 to 1,900 faults a step, 10 to 20% of its CPU time (2026, 2 cores).
"""

from __future__ import annotations

import ctypes
import functools

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 20  # larger blocks are still mapped and returned at once
TRIM_THRESHOLD = 64 << 20  # free memory kept at the top of the heap: bounded, as peak memory must be
TOP_PAD = 16 << 20  # grown ahead, so that the heap grows less often


@functools.cache
def keep_freed_memory() -> bool:
    """Once per process; False where the C library is not glibc (nothing changes there)."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    return all(mallopt(option, value) == 1 for option, value in settings)

"""A stored text as the clean and encode stages read it: its chunks decoded, or as UTF-8 for the byte maps and
the compiled loops. The storage layer makes one for a text artifact, so that no stage opens the store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class TextReader:
    """Each reader starts a pass over the text's chunks, in order."""

    strings: Callable[[], Iterator[str]]  # decoded
    arrays: Callable[[], Iterator[np.ndarray]]  # undecoded: (bytes,) uint8 views of valid UTF-8
    # Large enough that the compiled loops pay for loading numba (0.35 s): the store knows the text's size.
    compiled_pays: bool

"""Iterators produced ahead in a background thread: for work that releases the GIL (reading files, hashing,
Parquet decoding), so that it overlaps with the consumer's."""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import Any


def prefetch(items: Iterator[Any], depth: int = 2) -> Generator[Any, None, None]:
    """Produce `items` in a background thread (Parquet decoding releases the GIL)."""
    buffer: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put((True, item))
            buffer.put((False, None))
        except BaseException as exc:
            buffer.put((False, exc))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            more, item = buffer.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.01)

"""Ctrl-C and SIGTERM: the first asks the running stage to stop at its next safe point (a batch boundary in
training, a shard boundary in batches, between stages otherwise); a second stops at once.

The command installs the handlers; each stage installs them again while it runs, because Prefect puts its
own SIGTERM handler (which raises at once, mid-batch) around every flow run."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_stop = threading.Event()


def requested() -> bool:
    return _stop.is_set()


def request() -> None:
    _stop.set()


def reset() -> None:
    _stop.clear()


def _handle(signum: int, frame: object) -> None:
    if _stop.is_set():
        raise KeyboardInterrupt
    _stop.set()
    name = signal.Signals(signum).name
    print(f"charflow: {name}: stopping at the next safe point (again to stop at once)", file=sys.stderr, flush=True)


@contextmanager
def handled() -> Iterator[None]:
    """Install the handlers for the duration (on the main thread only, where Python delivers signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

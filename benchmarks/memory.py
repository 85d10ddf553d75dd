"""Peak anonymous memory of this process: what it holds itself, not the file pages it maps (the token stream)
or reads through the page cache, which `ru_maxrss` counts too."""

from __future__ import annotations

import threading
from pathlib import Path


def anonymous_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no RssAnon in /proc/{pid}/status")


def children_anonymous_mb() -> float:
    """The anonymous memory of this process's children (helper processes), together; a child not yet past
    its exec, which still shows this process's memory, is left out."""
    ours, total = Path("/proc/self/cmdline").read_bytes(), 0.0
    for task in Path("/proc/self/task").iterdir():
        try:
            for pid in (task / "children").read_text().split():
                if Path(f"/proc/{pid}/cmdline").read_bytes() != ours:
                    total += anonymous_mb(pid)
        except (OSError, RuntimeError):
            pass  # a thread or a child that ended meanwhile
    return total


class PeakAnonymous:
    """`with PeakAnonymous() as peak: ...`, then `peak.mb` (and `peak.children_mb`, of helper processes):
    sampled every few milliseconds."""

    def __init__(self, every: float = 0.005):
        self.every, self.mb, self.children_mb = every, 0.0, 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.mb = max(self.mb, anonymous_mb())
            self.children_mb = max(self.children_mb, children_anonymous_mb())
            self._stop.wait(self.every)

    def __enter__(self) -> PeakAnonymous:
        self.mb = anonymous_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.mb = max(self.mb, anonymous_mb())

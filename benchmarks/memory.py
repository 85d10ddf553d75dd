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


def children_anonymous_mb(pid: int | str = "self") -> float:
    """The anonymous memory of a process's children, together; a child not yet past its exec, which still
    shows its parent's memory, is left out."""
    ours, total = Path(f"/proc/{pid}/cmdline").read_bytes(), 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for pid in (task / "children").read_text().split():
                if Path(f"/proc/{pid}/cmdline").read_bytes() != ours:
                    total += anonymous_mb(pid)
        except (OSError, RuntimeError):
            pass  # a thread or a child that ended meanwhile
    return total


class PeakAnonymous:
    """`with PeakAnonymous() as peak: ...`, then `peak.mb` (and `peak.children_mb`, of its child processes):
    sampled every few milliseconds, of this process or of process `pid`. Time a process from outside: a
    sampling thread inside takes its GIL every few milliseconds (1 s more for a 1 GB prepare)."""

    def __init__(self, every: float = 0.005, pid: int | str = "self"):
        self.every, self.pid, self.mb, self.children_mb = every, pid, 0.0, 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.mb = max(self.mb, anonymous_mb(self.pid))
                self.children_mb = max(self.children_mb, children_anonymous_mb(self.pid))
            except (OSError, RuntimeError):
                return  # the process ended
            self._stop.wait(self.every)

    def __enter__(self) -> PeakAnonymous:
        self.mb = anonymous_mb(self.pid)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.pid == "self":
            self.mb = max(self.mb, anonymous_mb())

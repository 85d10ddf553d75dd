"""Progress on long work: a bar in a terminal; elsewhere a log line now and then, never a flood."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any


class Progress:
    """`advance()` once per unit of work (an epoch, a shard). In a terminal a rich progress bar; otherwise a line
    through `log` after each `every` of the total (a second apart at least), or after `seconds`, and at the end."""

    def __init__(
        self,
        total: int,
        description: str,
        log: Callable[[str], None],
        every: float = 0.1,
        seconds: float = 30.0,
        terminal: bool | None = None,
    ):
        self.total, self.description, self.log = total, description, log
        self.done = 0
        self.every, self.seconds = max(1, int(total * every)), seconds
        self._last_logged = time.monotonic()
        self._last_count = 0
        self._bar: Any = None
        if terminal if terminal is not None else sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[note]}"),
                TimeRemainingColumn(),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(description, total=total, note="")

    def advance(self, note: str = "") -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1, note=note)
            return
        now = time.monotonic()
        due = self.done - self._last_count >= self.every and now - self._last_logged >= 1.0
        if due or now - self._last_logged >= self.seconds or self.done == self.total:
            self.log(f"{self.description}: {self.done}/{self.total}" + (f" ({note})" if note else ""))
            self._last_logged, self._last_count = now, self.done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()

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
        done: int = 0,
    ):
        self.total, self.description, self.log = total, description, log
        self.done = done
        self.every, self.seconds = max(1, int(total * every)), seconds
        self._last_logged = time.monotonic()
        self._last_count = done
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
            self._task = self._bar.add_task(description, total=total, completed=done, note="")

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


class Presenter:
    """Shows a stage's events: a progress bar or sparse lines for epochs and shards, each sampled epoch's
    perplexity and samples, a resumed run. The wording lives here, outside every content key."""

    def __init__(
        self, log: Callable[[str], None], terminal: bool | None = None, warn: Callable[[str], None] | None = None
    ):
        self.log, self.terminal, self.warn = log, terminal, warn or log
        self._progress: dict[str, Progress] = {}

    def _advance(self, what: str, done: int, total: int, note: str = "") -> None:
        """`done` units of `total` are done now (a resumed run starts part of the way)."""
        if what not in self._progress:
            self._progress[what] = Progress(total, what, self.log, terminal=self.terminal, done=done - 1)
        bar = self._progress[what]
        bar.advance(note)
        if bar.done >= bar.total:
            bar.close()
            del self._progress[what]

    def __call__(self, event: Any) -> None:
        from artifacts.batches import ShardWritten
        from artifacts.stages import OtherLibraries
        from tasks.train.events import EpochEnd, Resumed

        if isinstance(event, Resumed):
            self.log(f"resuming after epoch {event.epoch} from {event.checkpoint}")
        elif isinstance(event, EpochEnd):
            row = event.metrics
            if event.samples:
                self.log(
                    f"epoch {event.epoch}: perplexity {row['perplexity']:.3f}, {row['tokens_per_s']:,.0f} tokens/s"
                )
                for sample in event.samples:
                    self.log(f"  {sample['text']}")
            self._advance("training", event.epoch, event.epochs, f"perplexity {row['perplexity']:.3f}")
        elif isinstance(event, ShardWritten):
            self._advance("writing batch shards", event.number, event.total)
        elif isinstance(event, OtherLibraries):
            self.warn(str(event))

    def close(self) -> None:
        for bar in self._progress.values():
            bar.close()
        self._progress.clear()


def artifact_line(stage: str, ref: Any) -> str:
    """A stage's artifact in one line: its stage, short key, whether it was cached, its summary's facts."""
    how = "cached" if ref.cache_hit else "computed"
    facts = ", ".join(f"{k}={short(v)}" for k, v in ref.summary.items() if _shown(k, v))
    return f"{stage:<7} {ref.key[:12]}  {how:<8}  {facts}"


def _shown(name: str, value: Any) -> bool:
    """Counts, names, keys and measures; not the source's path (it has its own line)."""
    return isinstance(value, (int, str, float)) and name != "source"


def short(value: Any) -> Any:
    """A content key as its 12-character prefix, a measure to 4 significant digits, anything else as it is."""
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]
    if isinstance(value, float):
        return f"{value:.4g}"
    return value


def version_line(corpus: str, version: int, new: bool, sha256: str) -> str:
    return f"corpus {corpus} v{version} ({'new' if new else 'known'} version, sha256 {sha256[:12]})"

"""Reading a batches artifact back as tensors: per rank, resumable, without Prefect.

From the token stream, each batch is gathered when it is read, by the same plan that would have stored it
(the spec's sampler from `tasks.samplers`, its seed and the epoch): memory holds one epoch's window order
(4 bytes a window under random sampling, nothing under consecutive) and one batch. From a materialized
artifact, the shards' rows are decoded ahead in a thread.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from artifacts.batches import BatchesSummary, Shard, read_batch_rows, read_tokens
from artifacts.manifest import read_manifest
from artifacts.vocab import VocabMismatch
from tasks.batches import plan_epoch
from tasks.errors import ParameterError
from tasks.samplers import EpochPlan, window_view, windows
from tasks.streams import prefetch

Pair = tuple[torch.Tensor, torch.Tensor]


class BatchReader(IterableDataset):
    """(X, Y) integer tensors of shape (rows, num_steps) in the artifact's order.

    Rank r of `world_size` readers gets its own part, and together they see every batch of an epoch once:
    whole batches (batch b of an epoch goes to rank b % world_size), or, where the sampler splits rows (the
    consecutive one), whole streams (rows r*B/N .. (r+1)*B/N of every batch), so each rank's hidden state stays
    valid. `split_rows` splits every sampler's batches by rows: DDP's ranks must all take the same steps, each
    on its part of the same global batch. `sampler` is the artifact's sampler (`str()` gives its name).
    `start=(epoch, batch)` resumes exactly there. Ids stay int32 as stored (half the bytes to a GPU; an
    embedding takes them as they are); pass `dtype=torch.long` where a loss wants int64 targets on the host.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        rank: int = 0,
        world_size: int = 1,
        expected_vocab_key: str | None = None,
        start: tuple[int, int] = (0, 0),
        pin_memory: bool = False,
        dtype: torch.dtype = torch.int32,
        split_rows: bool = False,
    ):
        self.folder = Path(folder)
        self.info = BatchesSummary.of(read_manifest(self.folder))
        self.sampler = self.info.spec.kind
        self.batch_size = self.info.spec.batch_size
        self.num_steps = self.info.spec.num_steps
        self.epochs = self.info.epochs
        if expected_vocab_key is not None and self.info.vocab_key != expected_vocab_key:
            raise VocabMismatch(
                f"{self.folder.name}: these batches were encoded with vocabulary {self.info.vocab_key[:12]}, "
                f"not the expected {expected_vocab_key[:12]}; generate batches from the same prepare run"
            )
        if not 0 <= rank < world_size:
            raise ParameterError(f"rank must be in 0..world_size-1, got rank={rank}, world_size={world_size}")
        self.split_rows = split_rows or self.sampler.splits_rows
        if self.split_rows and self.batch_size % world_size:
            raise ParameterError(
                f"batches split by rows: batch_size={self.batch_size} does not divide among {world_size} processes; "
                "choose a batch size that does, or another number of processes"
            )
        self.rank, self.world_size = rank, world_size
        self.start = start
        self.pin_memory = pin_memory and torch.cuda.is_available()
        if pin_memory and not self.pin_memory:
            warnings.warn("pin_memory needs CUDA, which is not available: reading into ordinary memory", stacklevel=2)
        self.dtype = dtype
        self._kept: dict[int, Pair] | None = None
        self._numpy_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        self._view: np.ndarray | None = None  # opened where it is read (a DataLoader worker maps its own)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_view": None, "_kept": None}

    def _windows(self) -> np.ndarray:
        if self._view is None:
            # (tokens - T, T + 1) windows of the memory-mapped (tokens,) int32 stream
            self._view = window_view(read_tokens(self.folder), self.num_steps)
        return self._view

    def _gather(self, plan: EpochPlan, batch: int, rows: slice) -> Pair:
        """One batch from the token stream: its rows' windows, copied into tensors of the reader's dtype."""
        starts = plan.starts_of(batch)[rows]  # (rows,)
        x_rows, y_rows = windows(self._windows(), starts)  # (rows, T) views of a (rows, T + 1) gather
        x = torch.from_numpy(np.ascontiguousarray(x_rows, dtype=self._numpy_dtype))
        y = torch.from_numpy(np.ascontiguousarray(y_rows, dtype=self._numpy_dtype))
        if self.pin_memory:
            x, y = x.pin_memory(), y.pin_memory()
        return x, y

    def _split(self) -> tuple[int, int]:
        """This reader's (rank, world), with DataLoader workers splitting a rank further."""
        worker = get_worker_info()
        if worker is None or worker.num_workers == 1:
            return self.rank, self.world_size
        if self.sampler.carries_state:
            raise ParameterError(
                f"{self.sampler} batches must reach the model in order: use num_workers=0 or 1 with this reader"
            )
        return self.rank * worker.num_workers + worker.id, self.world_size * worker.num_workers

    def _wanted(self, stored: int, epoch: int, rank: int, world: int) -> list[int]:
        """Epoch-local batch numbers this reader takes from `stored` epoch when serving `epoch`."""
        first = self.start[1] if epoch == self.start[0] else 0
        count = self.info.batches_in(stored)
        return [b for b in range(first, count) if self.split_rows or b % world == rank]

    def _read(self, stored: int, wanted: list[int]) -> Iterator[list[Pair]]:
        """The wanted batches of a stored epoch, shard by shard, decoded ahead in a background thread."""
        offset = self.info.first_batch_of(stored)
        wanted_global = [offset + b for b in wanted]

        def load(shard: Shard, groups: list[int]) -> list[Pair]:
            x_rows, y_rows = read_batch_rows(self.folder / shard.file, groups, self._numpy_dtype)
            x, y = torch.from_numpy(x_rows), torch.from_numpy(y_rows)  # (rows, T) each
            if self.pin_memory:
                x, y = x.pin_memory(), y.pin_memory()
            sizes = [self.batch_size] * len(groups)
            sizes[-1] = len(x) - self.batch_size * (len(groups) - 1)  # a kept partial last batch
            return list(zip(torch.split(x, sizes), torch.split(y, sizes), strict=True))

        def shards() -> Iterator[list[Pair]]:
            for shard in self.info.shards:
                lo, hi = shard.first_batch, shard.first_batch + shard.batches
                groups = [g - lo for g in wanted_global if lo <= g < hi]
                if groups:
                    yield load(shard, groups)

        return prefetch(shards())

    def positions(self) -> Iterator[tuple[int, int]]:
        """(epoch, batch) of every batch this reader yields, in order."""
        rank, world = self._split()
        for epoch in range(self.start[0], self.epochs):
            stored = 0 if self.info.same_every_epoch else epoch
            for batch in self._wanted(stored, epoch, rank, world):
                yield epoch, batch

    def epoch_batches(self, epoch: int) -> Iterator[Pair]:
        """This reader's batches of one epoch (from `start` when it is that epoch), in order."""
        rank, world = self._split()

        def rows(count: int) -> slice:
            if not self.split_rows:
                return slice(None)
            if count % world:
                raise ParameterError(
                    f"a batch of {count} rows does not divide among {world} processes (a kept partial last batch); "
                    "leave out --keep-last, or choose another number of processes"
                )
            return slice(rank * (count // world), (rank + 1) * (count // world))

        if not self.info.materialized:
            stored = 0 if self.info.same_every_epoch else epoch
            plan = plan_epoch(self.info.train_indices, self.info.spec, stored)
            for batch in self._wanted(stored, epoch, rank, world):
                yield self._gather(plan, batch, rows(len(plan.starts_of(batch))))
            return
        if self.info.same_every_epoch:
            # One stored epoch serves them all: decode it once, keep it.
            if self._kept is None:
                every = self._wanted(0, -1, rank, world)
                self._kept = dict(zip(every, (b for part in self._read(0, every) for b in part), strict=True))
            batches: Iterator[Pair] = (self._kept[b] for b in self._wanted(0, epoch, rank, world))
        else:
            batches = (b for part in self._read(epoch, self._wanted(epoch, epoch, rank, world)) for b in part)
        for x, y in batches:
            part = rows(len(x))
            yield x[part], y[part]

    def __iter__(self) -> Iterator[Pair]:
        for epoch in range(self.start[0], self.epochs):
            yield from self.epoch_batches(epoch)

    def __len__(self) -> int:
        return sum(1 for _ in self.positions())

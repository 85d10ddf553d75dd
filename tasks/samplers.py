"""Samplers: the book's random and consecutive minibatches, exact, seeded and vectorised.

With c the index sequence (n = len(c)), T = num_steps, B = batch_size and o the epoch's start offset:
  random       m = (n - o - 1) // T windows start at o + j*T; each epoch shuffles them with its own
               seeded permutation; batch k takes windows perm[kB : (k+1)B] (the last partial batch is
               dropped unless drop_last is off).
  consecutive  L = (n - o) // B; stream r is c[o + rL : o + (r+1)L]; batch k takes columns kT : kT+T of
               every stream, so row r of batch k+1 continues row r of batch k: (L - 1) // T batches.
x is c[s : s+T] and y is c[s+1 : s+T+1] for a row starting at s.

A sampler is one class here, registered under the name a spec gives (`SamplerSpec.sampler`): planning, the
reader and the training loop ask it what they need, never its name. A new one is a `Sampler` subclass
decorated with `@register` (and its tests): its name becomes a command-line choice and a schema value.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tasks.errors import CharflowError

if TYPE_CHECKING:
    from tasks.batches import SamplerSpec

Pairs = Iterator[tuple[np.ndarray, np.ndarray]]


class SamplerError(CharflowError, ValueError):
    """Sampler parameters that do not fit the corpus."""


@dataclass(frozen=True)
class EpochPlan(ABC):
    """Where the rows of one epoch start, computed a batch at a time."""

    epoch: int
    offset: int
    rows: int
    batch_size: int
    num_steps: int

    @property
    def batches(self) -> int:
        return -(-self.rows // self.batch_size)

    @abstractmethod
    def starts_of(self, batch: int) -> np.ndarray:
        """The start of every row of `batch`: (rows,) int64."""

    @property
    def starts(self) -> np.ndarray:
        """Every row's start in (batch, row) order: (rows,) int64; the whole epoch, for small corpora."""
        if not self.batches:
            return np.empty(0, dtype=np.int64)
        return np.concatenate([self.starts_of(k) for k in range(self.batches)])


def window_view(corpus: np.ndarray, num_steps: int) -> np.ndarray:
    """Every window of T + 1 tokens: (n - T, T + 1), no copy. Made once and gathered from per batch: making
    it costs 10 us, more than gathering a small batch."""
    return sliding_window_view(corpus, num_steps + 1)


def windows(view: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x and y for rows starting at `starts`: (rows, num_steps) each, from one gather of T+1 columns."""
    both = view[starts]  # (rows, T + 1)
    return both[:, :-1], both[:, 1:]


class Sampler(ABC):
    """One way of cutting an index sequence into minibatches, for one spec; `str()` is its registered name."""

    name: ClassVar[str]
    # Row r of each batch continues row r of the batch before: the model carries its hidden state across
    # batches, so they must reach it in order.
    carries_state: ClassVar[bool]
    # Ranks always split every batch by rows (each rank keeps its own streams), never take whole batches.
    splits_rows: ClassVar[bool]
    # drop_last may be turned off, keeping a shorter last batch.
    allows_partial_last_batch: ClassVar[bool]
    # Each epoch's plan is drawn from its seed, not only moved by its offset.
    shuffles: ClassVar[bool]

    def __init__(self, spec: SamplerSpec):
        self.spec = spec

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"

    @property
    @abstractmethod
    def largest_random_offset(self) -> int:
        """The largest start offset a random_offset epoch may draw (d2l 2.x: T-1 for random, T for consecutive)."""

    @abstractmethod
    def counts(self, n: int, offset: int = 0) -> tuple[int, int]:
        """(windows or streams' length, batches) for a sequence of n indices at this offset."""

    @abstractmethod
    def rows(self, n: int, offset: int = 0) -> int:
        """Rows of an epoch at this offset, a kept partial last batch's included."""

    @abstractmethod
    def check_fits(self, n: int) -> None:
        """Refuse (SamplerError) a corpus of n indices that leaves some epoch without a batch, with the
        numbers that say why."""

    @abstractmethod
    def plan(self, n: int, epoch: int, offset: int) -> EpochPlan:
        """The rows of `epoch` at this offset; the same spec, n, epoch and offset give the same plan."""

    def batches(self, corpus: np.ndarray, plan: EpochPlan) -> Pairs:
        """(X, Y) for each batch of `plan`, each (rows, num_steps), integers as stored: gathered windows."""
        view = window_view(corpus, self.spec.num_steps)
        for k in range(plan.batches):
            yield windows(view, plan.starts_of(k))  # (rows, T) each

    @property
    def max_offset(self) -> int:
        """The largest start offset an epoch may draw: none unless offsets are random."""
        return self.largest_random_offset if self.spec.random_offset else 0

    @property
    def same_every_epoch(self) -> bool:
        """Every epoch is the same batches: planned (and stored) once."""
        return not self.shuffles and not self.spec.random_offset

    def check_spec(self) -> None:
        """Refuse (ValueError) settings this sampler cannot honour, whatever the corpus."""
        if self.spec.drop_last or self.allows_partial_last_batch:
            return
        reason = ""
        if self.carries_state:
            reason = ": a shorter last batch would break the hidden state carried across batches"
        raise ValueError(f"{self} sampling always drops the remainder{reason}; leave drop_last on")

    def _shift(self) -> str:
        """How the largest offset bounds the corpus, for the refusals of check_fits."""
        return f" after a start offset of up to {self.max_offset}" if self.max_offset else ""


SAMPLERS: dict[str, type[Sampler]] = {}


def register(sampler: type[Sampler]) -> type[Sampler]:
    """Make `sampler` the one a spec names by `sampler.name` (a class decorator)."""
    SAMPLERS[sampler.name] = sampler
    return sampler


def sampler_for(spec: SamplerSpec) -> Sampler:
    return SAMPLERS[spec.sampler](spec)


@dataclass(frozen=True)
class WindowOrder(EpochPlan):
    """Rows are windows o + j*T in a drawn order: the epoch holds only that order (4 bytes a window while the
    window count fits int32)."""

    order: np.ndarray  # (rows,) window numbers

    def starts_of(self, batch: int) -> np.ndarray:
        B = self.batch_size
        return self.offset + self.order[batch * B : (batch + 1) * B].astype(np.int64) * self.num_steps


@dataclass(frozen=True)
class Streams(EpochPlan):
    """Row r of batch k starts k*T into stream r: the epoch holds nothing but the streams' length."""

    length: int

    def starts_of(self, batch: int) -> np.ndarray:
        return self.offset + batch * self.num_steps + np.arange(self.batch_size, dtype=np.int64) * self.length


@register
class RandomSampler(Sampler):
    name = "random"
    carries_state = False
    splits_rows = False
    allows_partial_last_batch = True
    shuffles = True

    @property
    def largest_random_offset(self) -> int:
        return self.spec.num_steps - 1

    def counts(self, n: int, offset: int = 0) -> tuple[int, int]:
        windows = max(n - offset - 1, 0) // self.spec.num_steps
        B = self.spec.batch_size
        return windows, windows // B if self.spec.drop_last else -(-windows // B)

    def rows(self, n: int, offset: int = 0) -> int:
        windows, batches = self.counts(n, offset)
        return min(batches * self.spec.batch_size, windows)

    def check_fits(self, n: int) -> None:
        T, B, o = self.spec.num_steps, self.spec.batch_size, self.max_offset
        windows, batches = self.counts(n, o)
        if windows < 1:
            raise SamplerError(
                f"a corpus of {n} indices is too short for one window of num_steps={T}{self._shift()} "
                f"(needs at least {T + 1 + o}); use a longer corpus or a smaller num_steps"
            )
        if batches < 1:
            raise SamplerError(
                f"{windows} windows of num_steps={T} in {n} indices{self._shift()} are fewer than batch_size={B}; "
                "lower batch_size or num_steps, or turn drop_last off"
            )

    def plan(self, n: int, epoch: int, offset: int) -> EpochPlan:
        windows, _ = self.counts(n, offset)
        # Shuffling an arange in place draws exactly rng.permutation(windows), in half the memory while it fits int32.
        order = np.arange(windows, dtype=np.int32 if windows < 2**31 else np.int64)
        np.random.default_rng([self.spec.seed, epoch]).shuffle(order)
        rows = self.rows(n, offset)
        return WindowOrder(epoch, offset, rows, self.spec.batch_size, self.spec.num_steps, order=order[:rows])


@register
class ConsecutiveSampler(Sampler):
    name = "consecutive"
    carries_state = True
    splits_rows = True  # each rank keeps whole streams, so its hidden state stays valid
    allows_partial_last_batch = False
    shuffles = False

    @property
    def largest_random_offset(self) -> int:
        return self.spec.num_steps

    def counts(self, n: int, offset: int = 0) -> tuple[int, int]:
        length = max(n - offset, 0) // self.spec.batch_size
        return length, max(length - 1, 0) // self.spec.num_steps

    def rows(self, n: int, offset: int = 0) -> int:
        return self.counts(n, offset)[1] * self.spec.batch_size

    def check_fits(self, n: int) -> None:
        T, B, o = self.spec.num_steps, self.spec.batch_size, self.max_offset
        length, batches = self.counts(n, o)
        if batches < 1:
            raise SamplerError(
                f"{n} indices{self._shift()} split into batch_size={B} streams of {length} are too short for one "
                f"batch of num_steps={T} (streams need at least {T + 1}, the corpus {B * (T + 1) + o}); "
                "lower batch_size or num_steps"
            )

    def plan(self, n: int, epoch: int, offset: int) -> EpochPlan:
        length, _ = self.counts(n, offset)
        return Streams(epoch, offset, self.rows(n, offset), self.spec.batch_size, self.spec.num_steps, length=length)

    def batches(self, corpus: np.ndarray, plan: EpochPlan) -> Pairs:
        # Batches are plain slices of the streams: no copy at all.
        B, T = self.spec.batch_size, self.spec.num_steps
        length = (len(corpus) - plan.offset) // B
        streams = corpus[plan.offset : plan.offset + B * length].reshape(B, length)  # (B, L)
        for k in range(plan.batches):
            yield streams[:, k * T : k * T + T], streams[:, k * T + 1 : k * T + T + 1]

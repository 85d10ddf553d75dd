"""Samplers: the book's random and consecutive minibatches, exact, seeded and vectorised.

With c the index sequence (n = len(c)), T = num_steps, B = batch_size and o the epoch's start offset:
  random       m = (n - o - 1) // T windows start at o + j*T; each epoch shuffles them with its own
               seeded permutation; batch k takes windows perm[kB : (k+1)B] (the last partial batch is
               dropped unless drop_last is off).
  consecutive  L = (n - o) // B; stream r is c[o + rL : o + (r+1)L]; batch k takes columns kT : kT+T of
               every stream, so row r of batch k+1 continues row r of batch k: (L - 1) // T batches.
x is c[s : s+T] and y is c[s+1 : s+T+1] for a row starting at s.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import BaseModel, ConfigDict, model_validator

from tasks.errors import CharflowError

BOOK_BATCHES_PER_EPOCH = 8  # the lyrics at batch_size 32, num_steps 35, for both samplers


class SamplerError(CharflowError, ValueError):
    """Sampler parameters that do not fit the corpus."""


class SamplerSpec(BaseModel):
    """How to cut an index sequence into minibatches; the book's settings by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sampler: Literal["random", "consecutive"] = "random"
    batch_size: int = 32
    num_steps: int = 35
    seed: int = 0
    epochs: int = 250
    drop_last: bool = True
    random_offset: bool = False

    @model_validator(mode="after")
    def _check(self) -> SamplerSpec:
        for name in ("batch_size", "num_steps", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.sampler == "consecutive" and not self.drop_last:
            raise ValueError(
                "consecutive sampling always drops the remainder: a shorter last batch would break the hidden "
                "state carried across batches; leave drop_last on"
            )
        return self

    @property
    def max_offset(self) -> int:
        """The largest start offset an epoch may draw (d2l 2.x: T-1 for random, T for consecutive)."""
        if not self.random_offset:
            return 0
        return self.num_steps - 1 if self.sampler == "random" else self.num_steps

    @property
    def same_every_epoch(self) -> bool:
        return self.sampler == "consecutive" and not self.random_offset


@dataclass(frozen=True)
class EpochPlan:
    """Where the rows of one epoch start, computed a batch at a time: a random epoch holds only its window
    order (4 bytes a window while the window count fits int32), a consecutive one nothing at all."""

    epoch: int
    offset: int
    rows: int
    batch_size: int
    num_steps: int
    order: np.ndarray | None  # (rows,) window numbers, random sampling only
    length: int = 0  # consecutive sampling: each stream's length

    @property
    def batches(self) -> int:
        return -(-self.rows // self.batch_size)

    def starts_of(self, batch: int) -> np.ndarray:
        """The start of every row of `batch`: (rows,) int64."""
        B, T = self.batch_size, self.num_steps
        if self.order is not None:
            return self.offset + self.order[batch * B : (batch + 1) * B].astype(np.int64) * T
        return self.offset + batch * T + np.arange(B, dtype=np.int64) * self.length

    @property
    def starts(self) -> np.ndarray:
        """Every row's start in (batch, row) order: (rows,) int64; the whole epoch, for small corpora."""
        if not self.batches:
            return np.empty(0, dtype=np.int64)
        return np.concatenate([self.starts_of(k) for k in range(self.batches)])


def epoch_offset(spec: SamplerSpec, epoch: int) -> int:
    if not spec.random_offset:
        return 0
    rng = np.random.default_rng([spec.seed, epoch, 1])
    return int(rng.integers(0, spec.max_offset + 1))


def batch_counts(n: int, spec: SamplerSpec, offset: int = 0) -> tuple[int, int]:
    """(windows or streams' length, batches) for a sequence of n indices at this offset."""
    T, B = spec.num_steps, spec.batch_size
    if spec.sampler == "random":
        windows = max(n - offset - 1, 0) // T
        return windows, windows // B if spec.drop_last else -(-windows // B)
    length = max(n - offset, 0) // B
    return length, max(length - 1, 0) // T


def check_fits(n: int, spec: SamplerSpec) -> None:
    """Refuse a spec that leaves some epoch without a batch, with the numbers that say why."""
    T, B, o = spec.num_steps, spec.batch_size, spec.max_offset
    shift = f" after a start offset of up to {o}" if o else ""
    if spec.sampler == "random":
        windows, batches = batch_counts(n, spec, o)
        if windows < 1:
            raise SamplerError(
                f"a corpus of {n} indices is too short for one window of num_steps={T}{shift} "
                f"(needs at least {T + 1 + o}); use a longer corpus or a smaller num_steps"
            )
        if batches < 1:
            raise SamplerError(
                f"{windows} windows of num_steps={T} in {n} indices{shift} are fewer than batch_size={B}; "
                "lower batch_size or num_steps, or turn drop_last off"
            )
        return
    length, batches = batch_counts(n, spec, o)
    if batches < 1:
        raise SamplerError(
            f"{n} indices{shift} split into batch_size={B} streams of {length} are too short for one batch of "
            f"num_steps={T} (streams need at least {T + 1}, the corpus {B * (T + 1) + o}); "
            "lower batch_size or num_steps"
        )


def plan_epoch(n: int, spec: SamplerSpec, epoch: int) -> EpochPlan:
    """The plan of `epoch`: the same spec, corpus length and epoch give the same plan."""
    check_fits(n, spec)
    T, B = spec.num_steps, spec.batch_size
    offset = epoch_offset(spec, epoch)
    units, batches = batch_counts(n, spec, offset)
    if spec.sampler == "consecutive":
        return EpochPlan(epoch, offset, batches * B, B, T, order=None, length=units)
    # Shuffling an arange in place draws exactly rng.permutation(units), in half the memory while it fits int32.
    order = np.arange(units, dtype=np.int32 if units < 2**31 else np.int64)
    np.random.default_rng([spec.seed, epoch]).shuffle(order)
    rows = min(batches * B, units)
    return EpochPlan(epoch, offset, rows, B, T, order=order[:rows])


def window_view(corpus: np.ndarray, num_steps: int) -> np.ndarray:
    """Every window of T + 1 tokens: (n - T, T + 1), no copy. Made once and gathered from per batch: making
    it costs 10 us, more than gathering a small batch."""
    return sliding_window_view(corpus, num_steps + 1)


def windows(view: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x and y for rows starting at `starts`: (rows, num_steps) each, from one gather of T+1 columns."""
    both = view[starts]  # (rows, T + 1)
    return both[:, :-1], both[:, 1:]


def iter_batches(corpus: np.ndarray, spec: SamplerSpec, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(X, Y) for each batch of `epoch`, each (batch_size, num_steps), integers as stored."""
    plan = plan_epoch(len(corpus), spec, epoch)
    B, T = spec.batch_size, spec.num_steps
    if spec.sampler == "consecutive":
        # Batches are plain slices of the streams: no copy at all.
        length = (len(corpus) - plan.offset) // B
        streams = corpus[plan.offset : plan.offset + B * length].reshape(B, length)  # (B, L)
        for k in range(plan.batches):
            yield streams[:, k * T : k * T + T], streams[:, k * T + 1 : k * T + T + 1]
        return
    view = window_view(corpus, T)
    for k in range(plan.batches):
        yield windows(view, plan.starts_of(k))  # (rows, T) each


class BatchesParams(SamplerSpec):
    """A sampler spec plus how the batches stage stores it: the token stream, from which the reader gathers
    each batch (a pure function of the stream, the spec, the seed and the epoch), or with `materialize` every
    batch's rows written out."""

    materialize: bool = False
    max_shard_rows: int = 65_536
    # The last fraction of the sequence is held out for validation: no batch reads it (the book has none).
    val_fraction: float = 0.0

    @model_validator(mode="after")
    def _shard_holds_a_batch(self) -> BatchesParams:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.max_shard_rows < self.batch_size:
            raise ValueError(
                f"max_shard_rows={self.max_shard_rows} cannot hold one batch of batch_size={self.batch_size}; "
                "raise max_shard_rows"
            )
        return self

    @property
    def stored_epochs(self) -> int:
        """Epochs planned (and written, materialized): one when every epoch is the same batches."""
        return 1 if self.same_every_epoch else self.epochs


def epoch_size(n: int, spec: SamplerSpec, epoch: int) -> tuple[int, int]:
    """(batches, rows) of `epoch`, counted, not planned."""
    units, batches = batch_counts(n, spec, epoch_offset(spec, epoch))
    if spec.sampler == "random" and not spec.drop_last:
        return batches, units
    return batches, batches * spec.batch_size


def rows_per_batch(n: int, spec: SamplerSpec, epoch: int) -> list[int]:
    """How many rows each batch of `epoch` has: batch_size, but for a kept partial last batch."""
    units, batches = batch_counts(n, spec, epoch_offset(spec, epoch))
    rows = [spec.batch_size] * batches
    if spec.sampler == "random" and not spec.drop_last and units % spec.batch_size:
        rows[-1] = units % spec.batch_size
    return rows


def plan_shards(n: int, params: BatchesParams) -> tuple[list[int], list[dict]]:
    """Batches per stored epoch, and shards of whole batches holding at most max_shard_rows rows each."""
    check_fits(n, params)
    per_epoch: list[int] = []
    shards: list[dict] = []
    current: dict | None = None
    batch_index = 0
    for epoch in range(params.stored_epochs):
        rows = rows_per_batch(n, params, epoch)
        per_epoch.append(len(rows))
        for batch, count in enumerate(rows):
            if current is None or current["rows"] + count > params.max_shard_rows:
                current = {"first": [epoch, batch], "first_batch": batch_index, "batches": 0, "rows": 0}
                shards.append(current)
            current["last"] = [epoch, batch]
            current["batches"] += 1
            current["rows"] += count
            batch_index += 1
    return per_epoch, shards


def stored_batches(corpus: np.ndarray, params: BatchesParams) -> Iterator[tuple]:
    """Every stored batch in order, as (epoch, batch, row, start, x, y): rows (rows,), x and y (rows, T);
    gathered a batch at a time, so memory holds one batch however large the corpus."""
    view = window_view(corpus, params.num_steps)
    for epoch in range(params.stored_epochs):
        plan = plan_epoch(len(corpus), params, epoch)
        for k in range(plan.batches):
            starts = plan.starts_of(k)  # (rows,)
            x, y = windows(view, starts)  # (rows, T) each
            yield epoch, np.full(len(starts), k), np.arange(len(starts)), starts, x, y


def split_validation(n: int, val_fraction: float) -> int:
    """How many leading indices are for training; the rest (at least two when asked for) is held out."""
    if val_fraction == 0:
        return n
    held = max(2, round(n * val_fraction))
    return n - held

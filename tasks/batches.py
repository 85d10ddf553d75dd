"""Minibatches of an index sequence: a sampler spec, its epochs' plans, and how the batches stage stores them.

The samplers themselves, and the book's formulas they follow, are in `tasks.samplers`; everything here asks
the spec's sampler (`spec.kind`), never its name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidatorFunctionWrapHandler, field_validator, model_validator

from tasks.samplers import SAMPLERS, EpochPlan, Sampler, sampler_for, window_view, windows

BOOK_BATCHES_PER_EPOCH = 8  # the lyrics at batch_size 32, num_steps 35, for both samplers
# Training writes a metrics row per epoch (and plans each epoch's count with random offsets): a bound that keeps
# both small, far above any real run (the book's is 250).
MAX_EPOCHS = 100_000

# The samplers built in, in registration order: the command line's choices and the parameter schema's.
if TYPE_CHECKING:
    SamplerName = str  # the choices are known when the samplers have registered, not to a type checker
else:
    SamplerName = Literal[tuple(SAMPLERS)]


class SamplerSpec(BaseModel):
    """How to cut an index sequence into minibatches; the book's settings by default."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    sampler: SamplerName = Field("random", description="the book's random or consecutive minibatches")
    batch_size: int = Field(32, description="rows per batch")
    num_steps: int = Field(35, description="time steps per row")
    seed: int = Field(0, ge=0, description="the sampler's and the model's seed")
    epochs: int = Field(250, le=MAX_EPOCHS, description=f"epochs of batches (and of training), {MAX_EPOCHS:,} at most")
    drop_last: bool = Field(True, description="drop a partial last batch (random sampling)")
    random_offset: bool = Field(False, description="a seeded start offset per epoch")

    @field_validator("sampler", mode="wrap")
    @classmethod
    def _registered(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> str:
        """A sampler registered after the built-in ones (a test's) is a sampler too; an unknown name gets the
        schema's own refusal."""
        if isinstance(value, str) and value in SAMPLERS:
            return value
        return handler(value)

    @model_validator(mode="after")
    def _check(self) -> SamplerSpec:
        for name in ("batch_size", "num_steps", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        self.kind.check_spec()
        return self

    @property
    def kind(self) -> Sampler:
        """The sampler this spec names, bound to it."""
        return sampler_for(self)

    @property
    def max_offset(self) -> int:
        """The largest start offset an epoch may draw."""
        return self.kind.max_offset

    @property
    def same_every_epoch(self) -> bool:
        return self.kind.same_every_epoch


def epoch_offset(spec: SamplerSpec, epoch: int) -> int:
    if not spec.random_offset:
        return 0
    rng = np.random.default_rng([spec.seed, epoch, 1])
    return int(rng.integers(0, spec.max_offset + 1))


def batch_counts(n: int, spec: SamplerSpec, offset: int = 0) -> tuple[int, int]:
    """(windows or streams' length, batches) for a sequence of n indices at this offset."""
    return spec.kind.counts(n, offset)


def check_fits(n: int, spec: SamplerSpec) -> None:
    """Refuse a spec that leaves some epoch without a batch, with the numbers that say why."""
    spec.kind.check_fits(n)


def plan_epoch(n: int, spec: SamplerSpec, epoch: int) -> EpochPlan:
    """The plan of `epoch`: the same spec, corpus length and epoch give the same plan."""
    sampler = spec.kind
    sampler.check_fits(n)
    return sampler.plan(n, epoch, epoch_offset(spec, epoch))


def iter_batches(corpus: np.ndarray, spec: SamplerSpec, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(X, Y) for each batch of `epoch`, each (batch_size, num_steps), integers as stored."""
    yield from spec.kind.batches(corpus, plan_epoch(len(corpus), spec, epoch))


class BatchesParams(SamplerSpec):
    """A sampler spec plus how the batches stage stores it: the token stream, from which the reader gathers
    each batch (a pure function of the stream, the spec, the seed and the epoch), or with `materialize` every
    batch's rows written out."""

    materialize: bool = Field(
        False,
        description="write every batch's rows as Parquet shards, not just the token stream (8 bytes a token an epoch)",
    )
    max_shard_rows: int = Field(65_536, description="rows per Parquet shard, at most (with --materialize)")
    # The last fraction of the sequence is held out for validation: no batch reads it (the book has none).
    val_fraction: float = Field(0.0, description="hold out the sequence's tail for validation")

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
    offset = epoch_offset(spec, epoch)
    return spec.kind.counts(n, offset)[1], spec.kind.rows(n, offset)


def epochs_size(n: int, spec: SamplerSpec, epochs: int) -> tuple[int, int]:
    """(batches, rows) of the first `epochs` epochs together, in constant memory: without random offsets every
    epoch has the same counts (one count), else one count per epoch, summed as they come."""
    if not spec.random_offset:
        batches, rows = epoch_size(n, spec, 0)
        return batches * epochs, rows * epochs
    batches = rows = 0
    for epoch in range(epochs):
        b, r = epoch_size(n, spec, epoch)
        batches, rows = batches + b, rows + r
    return batches, rows


def rows_per_batch(n: int, spec: SamplerSpec, epoch: int) -> list[int]:
    """How many rows each batch of `epoch` has: batch_size, but for a kept partial last batch."""
    batches, rows = epoch_size(n, spec, epoch)
    return [min(spec.batch_size, rows - k * spec.batch_size) for k in range(batches)]


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

"""Samplers as types: the built-in ones' properties, the name's validation, and a third sampler defined here
alone, registered, and taken through planning, the batches stage and its reader, the DDP row split and an
epoch of training."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from artifacts.batch_reader import BatchReader
from artifacts.batches import BatchesSummary
from artifacts.indices import EncodeSummary, write_indices
from artifacts.stages import run_stage
from artifacts.store import Store
from charflow.cli import build_parser
from tasks.batches import (
    BatchesParams,
    SamplerName,
    SamplerSpec,
    batch_counts,
    check_fits,
    epoch_size,
    iter_batches,
    plan_epoch,
    plan_shards,
)
from tasks.samplers import (
    SAMPLERS,
    ConsecutiveSampler,
    EpochPlan,
    RandomSampler,
    SamplerError,
    register,
    sampler_for,
)
from tasks.train.loop import train
from tasks.train.params import TrainParams
from tasks.vocab import Vocab

VOCAB_KEY = "v" * 64


@dataclass(frozen=True)
class InOrder(EpochPlan):
    """Row j of the epoch is window j: it starts at o + j*T."""

    def starts_of(self, batch: int) -> np.ndarray:
        first = batch * self.batch_size
        return self.offset + np.arange(first, min(first + self.batch_size, self.rows), dtype=np.int64) * self.num_steps


class SequentialSampler(RandomSampler):
    """The random sampler's windows in the corpus's order: a deterministic baseline, every epoch the same
    batches (but for a random offset), a shorter last batch kept on request. It counts and fits as the random
    sampler does; only its plan is its own."""

    name = "sequential"
    shuffles = False

    def check_fits(self, n: int) -> None:
        windows, batches = self.counts(n, self.max_offset)
        if batches < 1:
            raise SamplerError(f"{windows} windows in {n} indices make no batch of {self.spec.batch_size}")

    def plan(self, n: int, epoch: int, offset: int) -> EpochPlan:
        return InOrder(epoch, offset, self.rows(n, offset), self.spec.batch_size, self.spec.num_steps)


@pytest.fixture
def sequential():
    """The third sampler, registered for one test and gone after it."""
    register(SequentialSampler)
    yield SequentialSampler
    del SAMPLERS[SequentialSampler.name]


def window(start: int, T: int) -> list[int]:
    return list(range(start, start + T))


# The built-in samplers


def test_the_built_in_samplers_are_registered_in_order_and_are_the_names_choices():
    assert list(SAMPLERS) == ["random", "consecutive"]
    assert SAMPLERS["random"] is RandomSampler
    assert SAMPLERS["consecutive"] is ConsecutiveSampler
    assert typing.get_args(SamplerName) == ("random", "consecutive")


def test_what_each_built_in_sampler_says_of_itself():
    random, consecutive = SamplerSpec(sampler="random").kind, SamplerSpec(sampler="consecutive").kind
    assert str(random) == "random"
    assert str(consecutive) == "consecutive"
    assert random.carries_state is False
    assert consecutive.carries_state is True
    assert random.splits_rows is False
    assert consecutive.splits_rows is True
    assert random.allows_partial_last_batch is True
    assert consecutive.allows_partial_last_batch is False
    assert isinstance(sampler_for(SamplerSpec()), RandomSampler)


def test_a_sampler_that_carries_state_refuses_a_partial_last_batch_saying_why():
    with pytest.raises(ValidationError, match="consecutive sampling always drops the remainder: a shorter last batch"):
        SamplerSpec(sampler="consecutive", drop_last=False)


def test_the_largest_offset_is_the_samplers_and_only_when_offsets_are_random():
    assert SamplerSpec(num_steps=10, random_offset=True).max_offset == 9
    assert SamplerSpec(sampler="consecutive", num_steps=10, random_offset=True).max_offset == 10
    assert SamplerSpec(sampler="consecutive", num_steps=10).max_offset == 0


def test_an_unknown_sampler_is_refused_by_the_model_and_by_the_command_line(capsys):
    with pytest.raises(ValidationError, match="sampler\n  Input should be 'random' or 'consecutive'"):
        SamplerSpec(sampler="sequential")  # not registered outside its tests
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["batches", "--sampler", "bogus"])
    assert refused.value.code == 2
    error = capsys.readouterr().err
    assert "argument --sampler: invalid choice: 'bogus' (choose from 'random', 'consecutive')" in error


# A third sampler, defined above and nowhere else


def test_a_registered_sampler_is_named_by_a_spec_and_keeps_its_name_in_json(sequential):
    spec = BatchesParams(sampler="sequential", batch_size=2, num_steps=6)
    assert isinstance(spec.kind, SequentialSampler)
    assert str(spec.kind) == "sequential"
    assert spec.model_dump(mode="json")["sampler"] == "sequential"
    assert BatchesParams.model_validate_json(spec.model_dump_json()) == spec


def test_planning_asks_the_sampler(sequential):
    book = np.arange(30)
    spec = SamplerSpec(sampler="sequential", batch_size=2, num_steps=6)
    got = [(x.tolist(), y.tolist()) for x, y in iter_batches(book, spec, epoch=0)]
    assert got == [
        ([window(0, 6), window(6, 6)], [window(1, 6), window(7, 6)]),
        ([window(12, 6), window(18, 6)], [window(13, 6), window(19, 6)]),
    ]
    assert batch_counts(30, spec) == (4, 2)
    assert plan_epoch(30, spec, 5).starts.tolist() == [0, 6, 12, 18]  # every epoch the same
    kept = SamplerSpec(sampler="sequential", batch_size=3, num_steps=6, drop_last=False)
    assert [len(x) for x, _ in iter_batches(book, kept, 0)] == [3, 1]
    assert epoch_size(30, kept, 0) == (2, 4)
    with pytest.raises(SamplerError, match="4 windows in 30 indices make no batch of 5"):
        check_fits(30, SamplerSpec(sampler="sequential", batch_size=5, num_steps=6))


def test_stored_epochs_and_shards_follow_the_sampler(sequential):
    params = BatchesParams(sampler="sequential", batch_size=3, num_steps=6, epochs=4, drop_last=False, max_shard_rows=4)
    assert params.same_every_epoch is True
    assert params.stored_epochs == 1
    per_epoch, shards = plan_shards(30, params)
    assert per_epoch == [2]
    assert [(s["batches"], s["rows"]) for s in shards] == [(2, 4)]
    shifted = params.model_copy(update={"random_offset": True})
    assert shifted.stored_epochs == 4
    assert shifted.max_offset == 5


def make_batches(store: Store, corpus: np.ndarray, **params):
    """A real batches artifact over an encode artifact holding `corpus`."""

    def build(folder: Path) -> EncodeSummary:
        write_indices(folder, [corpus.astype(np.int32)], {"vocab_key": VOCAB_KEY})
        return EncodeSummary(rows=len(corpus), vocab_key=VOCAB_KEY, vocab_size=int(corpus.max()) + 1)

    indices = store.materialize(
        stage="encode", key=f"{len(corpus):064d}", params={}, inputs={}, code="", libraries={}, build=build
    )
    return run_stage(store, "batches", BatchesParams(**params), indices=indices)


@pytest.mark.parametrize("materialize", [False, True], ids=["stream", "materialized"])
def test_the_reader_gives_back_the_samplers_batches(sequential, tmp_path, materialize):
    corpus = np.arange(100)
    params = {"sampler": "sequential", "batch_size": 4, "num_steps": 7, "epochs": 3, "drop_last": False}
    ref = make_batches(Store(tmp_path), corpus, **params, max_shard_rows=8, materialize=materialize)
    summary = BatchesSummary.of(ref)
    assert summary.spec.sampler == "sequential"
    assert summary.epochs_stored == 1
    assert summary.batches_in(0) == 4  # 14 windows: 4, 4, 4 and 2 rows
    assert summary.batches_per_epoch == ([4] if materialize else [])  # listed where the rows are written
    reader = BatchReader(ref.path, expected_vocab_key=VOCAB_KEY)
    assert str(reader.sampler) == "sequential"
    assert reader.sampler.carries_state is False
    got = [(x.numpy(), y.numpy()) for x, y in reader]
    want = [pair for epoch in range(3) for pair in iter_batches(corpus, BatchesParams(**params), epoch)]
    assert len(got) == len(want) == 12
    for (x, y), (wx, wy) in zip(got, want, strict=True):
        assert np.array_equal(x, wx)
        assert np.array_equal(y, wy)
    assert got[3][0].tolist() == [window(84, 7), window(91, 7)]
    assert list(reader.positions())[:5] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]


def test_ranks_take_whole_batches_or_split_rows(sequential, tmp_path):
    ref = make_batches(Store(tmp_path), np.arange(200) % 50, sampler="sequential", batch_size=4, num_steps=5, epochs=2)
    whole = list(BatchReader(ref.path))
    assert len(whole) == 18  # 39 windows: 9 batches an epoch
    # Whole batches by rank, as the sampler does not split rows ...
    full = dict(zip(BatchReader(ref.path).positions(), whole, strict=True))
    seen = []
    for rank in range(2):
        reader = BatchReader(ref.path, rank=rank, world_size=2)
        positions = list(reader.positions())
        assert {batch % 2 for _, batch in positions} == {rank}
        for position, (x, _) in zip(positions, reader, strict=True):
            assert torch.equal(x, full[position][0])
        seen += positions
    assert sorted(seen) == sorted(full)
    # ... and DDP's row split: both ranks' rows of each step together are the one process's batch.
    by_rows = [list(BatchReader(ref.path, rank=r, world_size=2, split_rows=True)) for r in range(2)]
    assert [len(part) for part in by_rows] == [18, 18]
    for step, (x, y) in enumerate(whole):
        assert by_rows[0][step][0].shape == (2, 5)
        assert torch.equal(torch.cat([by_rows[0][step][0], by_rows[1][step][0]]), x)
        assert torch.equal(torch.cat([by_rows[0][step][1], by_rows[1][step][1]]), y)


def test_an_epoch_of_training_on_the_samplers_batches(sequential, tmp_path):
    ref = make_batches(Store(tmp_path), np.arange(300) % 12, sampler="sequential", batch_size=4, num_steps=5, epochs=1)
    reader = BatchReader(ref.path, dtype=torch.long)
    served: list[int] = []

    def epoch_batches(epoch: int):
        for pair in reader.epoch_batches(epoch):
            served.append(epoch)
            yield pair

    vocab = Vocab(tokens=list("abcdefghijkl"), counts=np.ones(12, dtype=np.int64), reserved=0)
    params = TrainParams(model="rnn", hidden=8, optimizer="adam", lr=0.01, pred_period=1, pred_chars=3)
    trained = train(
        epoch_batches,
        epochs=reader.epochs,
        carry_state=reader.sampler.carries_state,
        vocab=vocab,
        params=params.model_copy(update={"device": "cpu", "prefixes": ("ab",)}),
    )
    assert served == [0] * 14  # 59 windows: 14 whole batches
    assert trained.state.epoch == 1
    assert [m["epoch"] for m in trained.state.metrics] == [1]
    assert math.isfinite(trained.state.metrics[0]["perplexity"])

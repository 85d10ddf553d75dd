"""Samplers: the book's test vectors, the lyrics' batch counts, and properties over random corpora and specs."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tasks.batches import (
    BOOK_BATCHES_PER_EPOCH,
    BatchesParams,
    SamplerSpec,
    batch_counts,
    check_fits,
    iter_batches,
    plan_epoch,
    plan_shards,
)
from tasks.encode import encode
from tasks.samplers import SamplerError
from tasks.vocab import VocabParams, build_vocab

BOOK = np.arange(30)


def batches(corpus, **spec):
    return [(x.tolist(), y.tolist()) for x, y in iter_batches(corpus, SamplerSpec(**spec), epoch=0)]


def test_consecutive_book_vectors():
    assert batches(BOOK, sampler="consecutive", batch_size=2, num_steps=6) == [
        ([[0, 1, 2, 3, 4, 5], [15, 16, 17, 18, 19, 20]], [[1, 2, 3, 4, 5, 6], [16, 17, 18, 19, 20, 21]]),
        ([[6, 7, 8, 9, 10, 11], [21, 22, 23, 24, 25, 26]], [[7, 8, 9, 10, 11, 12], [22, 23, 24, 25, 26, 27]]),
    ]


def test_random_book_vectors():
    got = batches(BOOK, sampler="random", batch_size=2, num_steps=6)
    assert len(got) == 2
    assert all(len(x) == 2 for x, _ in got)
    rows = [(x, y) for xs, ys in got for x, y in zip(xs, ys, strict=True)]
    assert sorted(x[0] for x, _ in rows) == [0, 6, 12, 18]
    for x, y in rows:
        assert x == list(range(x[0], x[0] + 6))
        assert y == [v + 1 for v in x]


def test_ids_stay_integers():
    x, y = next(iter_batches(BOOK.astype(np.int32), SamplerSpec(batch_size=2, num_steps=6), 0))
    assert x.dtype == y.dtype == np.int32


@pytest.mark.parametrize("sampler", ["random", "consecutive"])
def test_eight_batches_per_epoch_on_the_lyrics(book_text, sampler):
    indices = encode(book_text, build_vocab(book_text, VocabParams()))
    spec = SamplerSpec(sampler=sampler)
    assert batch_counts(len(indices), spec) == ((285, 8) if sampler == "random" else (312, 8))
    got = list(iter_batches(indices, spec, epoch=3))
    assert len(got) == BOOK_BATCHES_PER_EPOCH == 8
    assert sum(x.size for x, _ in got) == 8 * 32 * 35 == 8_960
    assert all(x.shape == y.shape == (32, 35) for x, y in got)


def test_same_seed_same_batches_other_epoch_other_order():
    spec = SamplerSpec(batch_size=4, num_steps=5, seed=7)
    corpus = np.arange(1_000)
    first = plan_epoch(len(corpus), spec, 0).starts
    assert np.array_equal(first, plan_epoch(len(corpus), spec, 0).starts)
    assert not np.array_equal(first, plan_epoch(len(corpus), spec, 1).starts)
    assert not np.array_equal(first, plan_epoch(len(corpus), spec.model_copy(update={"seed": 8}), 0).starts)


def test_random_offset_moves_window_boundaries():
    corpus = np.arange(2_000)
    for sampler in ("random", "consecutive"):
        spec = SamplerSpec(sampler=sampler, batch_size=4, num_steps=10, random_offset=True, seed=1)
        offsets = {plan_epoch(len(corpus), spec, e).offset for e in range(30)}
        assert len(offsets) > 3
        assert max(offsets) <= spec.max_offset
        assert plan_epoch(len(corpus), spec, 5).offset == plan_epoch(len(corpus), spec, 5).offset


@pytest.mark.parametrize(
    ("n", "spec", "message"),
    [
        (5, {"num_steps": 6, "batch_size": 1}, "a corpus of 5 indices is too short for one window of num_steps=6"),
        (30, {"num_steps": 6, "batch_size": 5}, "4 windows of num_steps=6 in 30 indices are fewer than batch_size=5"),
        (
            30,
            {"sampler": "consecutive", "num_steps": 6, "batch_size": 5},
            "30 indices split into batch_size=5 streams of 6 are too short for one batch of num_steps=6",
        ),
        (31, {"num_steps": 6, "batch_size": 5, "random_offset": True}, "in 31 indices after a start offset of up to 5"),
    ],
)
def test_specs_that_do_not_fit_are_refused_with_numbers(n, spec, message):
    with pytest.raises(SamplerError, match=message):
        check_fits(n, SamplerSpec(**spec))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"num_steps": -3}, "num_steps must be a positive integer, got -3"),
        ({"epochs": 0}, "epochs must be a positive integer, got 0"),
        ({"sampler": "shuffled"}, "sampler"),
        ({"sampler": "consecutive", "drop_last": False}, "always drops the remainder"),
        ({"batch_sz": 3}, "batch_sz"),
    ],
)
def test_bad_spec_is_refused(spec, message):
    with pytest.raises(ValidationError, match=message):
        SamplerSpec(**spec)


def test_shards_hold_whole_batches():
    with pytest.raises(ValidationError, match="max_shard_rows=3 cannot hold one batch of batch_size=4"):
        BatchesParams(batch_size=4, max_shard_rows=3)
    params = BatchesParams(batch_size=4, num_steps=5, epochs=3, max_shard_rows=10)
    per_epoch, shards = plan_shards(100, params)
    assert per_epoch == [4, 4, 4]
    assert [s["batches"] for s in shards] == [2] * 6
    assert all(s["rows"] <= 10 for s in shards)
    assert BatchesParams(sampler="consecutive", epochs=250).stored_epochs == 1


SPECS = st.builds(
    SamplerSpec,
    sampler=st.sampled_from(["random", "consecutive"]),
    batch_size=st.integers(1, 6),
    num_steps=st.integers(1, 8),
    seed=st.integers(0, 3),
    epochs=st.just(3),
    random_offset=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(2, 300), spec=SPECS, drop_last=st.booleans(), epoch=st.integers(0, 2))
def test_sampler_properties(n, spec, drop_last, epoch):
    if spec.sampler == "random":
        spec = spec.model_copy(update={"drop_last": drop_last})
    corpus = np.random.default_rng(n).integers(0, 50, n)
    try:
        check_fits(n, spec)
    except SamplerError:
        o = spec.max_offset
        units, count = batch_counts(n, spec, o)
        assert count < 1
        return
    plan = plan_epoch(n, spec, epoch)
    T, B = spec.num_steps, spec.batch_size
    units, count = batch_counts(n, spec, plan.offset)
    got = list(iter_batches(corpus, spec, epoch))
    assert len(got) == plan.batches == count
    starts = plan.starts
    rows = np.concatenate([x for x, _ in got])
    targets = np.concatenate([y for _, y in got])
    for start, x, y in zip(starts, rows, targets, strict=True):
        assert np.array_equal(x, corpus[start : start + T])
        assert np.array_equal(y, corpus[start + 1 : start + T + 1])
    if spec.sampler == "random":
        window_starts = plan.offset + np.arange(units) * T
        assert len(set(starts.tolist())) == len(starts)
        assert set(starts.tolist()) <= set(window_starts.tolist())
        assert len(starts) == (count * B if spec.drop_last else units)
    else:
        for (_, y_k), (x_next, _) in zip(got, got[1:], strict=False):
            assert np.array_equal(x_next[:, 0], y_k[:, -1])
        assert all(x.shape == (B, T) for x, _ in got)


@given(spec=SPECS)
@settings(max_examples=50, deadline=None)
def test_random_sampling_uses_every_window_once_per_epoch(spec):
    assume(spec.sampler == "random")
    spec = spec.model_copy(update={"drop_last": False})
    corpus = np.arange(500)
    for epoch in range(3):
        plan = plan_epoch(len(corpus), spec, epoch)
        units, _ = batch_counts(len(corpus), spec, plan.offset)
        assert sorted(plan.starts.tolist()) == (plan.offset + np.arange(units) * spec.num_steps).tolist()


def test_golden_random_starts():
    """Pinned: a change in the RNG stream or in how windows are drawn fails here. Regenerate with

    from tasks.batches import SamplerSpec, plan_epoch
    spec = SamplerSpec(batch_size=3, num_steps=5, seed=0, random_offset=True)
    print(plan_epoch(100, spec, 0).offset, plan_epoch(100, spec, 0).starts.tolist())
    """
    spec = SamplerSpec(batch_size=3, num_steps=5, seed=0)
    first = [10, 50, 15, 70, 0, 60, 20, 90, 35, 25, 85, 80, 40, 55, 30, 65, 45, 5]
    second = [50, 0, 65, 80, 45, 20, 5, 90, 35, 55, 15, 85, 30, 75, 70, 40, 60, 10]
    assert plan_epoch(100, spec, 0).starts.tolist() == first
    assert plan_epoch(100, spec, 1).starts.tolist() == second
    shifted = plan_epoch(100, spec.model_copy(update={"random_offset": True}), 0)
    assert shifted.offset == 4
    assert shifted.starts.tolist() == [s + 4 for s in first]
    x, y = next(iter_batches(np.arange(100), spec, 0))
    assert x[:, 0].tolist() == first[:3]
    assert y[:, -1].tolist() == [s + 5 for s in first[:3]]

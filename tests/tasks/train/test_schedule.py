"""The learning-rate schedules: exact rates at chosen steps, and the steps a run takes."""

import math

import pytest

from tasks.batches import BatchesParams, epoch_size
from tasks.train.params import TrainParams
from tasks.train.schedule import Schedule, total_steps


def test_constant_without_warmup_is_the_books_fixed_rate():
    schedule = Schedule.of(TrainParams(), 100)
    assert schedule.constant
    assert [schedule.lr_at(step, step // 10) for step in (0, 50, 99)] == [100.0, 100.0, 100.0]


def test_linear_warmup_reaches_the_rate_on_its_last_step():
    schedule = Schedule.of(TrainParams(lr=1.0, warmup_steps=4), 10)
    assert not schedule.constant
    assert [schedule.lr_at(step, 0) for step in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_falls_from_the_rate_to_a_tenth_after_the_warmup():
    schedule = Schedule.of(TrainParams(lr=2.0, lr_schedule="cosine", warmup_steps=2), 12)
    assert schedule.lr_at(0, 0) == 1.0
    assert schedule.lr_at(1, 0) == 2.0
    assert schedule.lr_at(2, 0) == 2.0  # the first step after the warmup: progress 0
    assert schedule.lr_at(7, 0) == pytest.approx(1.1)  # half way: (2 + 0.2) / 2
    assert schedule.lr_at(7, 0) == 0.2 + 0.5 * (1 + math.cos(math.pi * 0.5)) * 1.8
    assert schedule.lr_at(11, 0) == 0.2 + 0.5 * (1 + math.cos(math.pi * 0.9)) * 1.8
    assert schedule.lr_at(12, 0) == pytest.approx(0.2)  # past the end: the floor, lr / 10


def test_step_multiplies_by_the_decay_every_period_of_epochs():
    schedule = Schedule.of(TrainParams(lr=1.0, lr_schedule="step", lr_decay=0.5, lr_step_epochs=3), 100)
    assert [schedule.lr_at(0, epoch) for epoch in range(8)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    warm = Schedule.of(TrainParams(lr=1.0, lr_schedule="step", warmup_steps=2), 100)
    assert [warm.lr_at(0, 0), warm.lr_at(1, 0), warm.lr_at(5, 50)] == [0.5, 1.0, pytest.approx(0.1)]


def test_total_steps_counts_every_epochs_batches():
    book = BatchesParams()
    assert total_steps(10_000, book) == 250 * epoch_size(10_000, book, 0)[0] == 250 * 8  # the book's 8 a epoch
    shifted = BatchesParams(random_offset=True, epochs=5)
    assert total_steps(10_000, shifted) == sum(epoch_size(10_000, shifted, e)[0] for e in range(5)) == 40

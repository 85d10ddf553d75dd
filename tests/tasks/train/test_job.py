"""The training job and its events as JSON: what travels to every torchrun rank, and what the first rank
relays back, read as the very objects that were written."""

import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from tasks.train.events import EpochEnd, Resumed, event_from_json, event_json
from tasks.train.job import HeldOut, TrainJob, TrainResult
from tasks.train.params import TrainParams


def job(**changes) -> TrainJob:
    fields = {
        "params": TrainParams(model="rnn", hidden=8, device="cpu", nproc=2, prefixes=("分开",)),
        "batches": Path("/store/batches/b1"),
        "vocab_key": "v" * 64,
        "vocab": Path("/store/vocab/v1"),
        "held_out": HeldOut(encoded=Path("/store/encode/e1"), start=900),
        "checkpoint": Path("/store/.work/train-k/checkpoint.pt"),
        "output": Path("/store/.tmp/train-k"),
        "metadata": {"stage": "train", "vocab_key": "v" * 64, "batches_key": "b" * 64},
    }
    return TrainJob(**{**fields, **changes})


@pytest.mark.parametrize("held_out", [HeldOut(encoded=Path("/store/encode/e1"), start=900), None])
def test_a_job_read_back_from_its_json_is_the_same_job(held_out):
    written = job(held_out=held_out)
    read = TrainJob.model_validate_json(written.model_dump_json())
    assert read == written
    assert read.params.prefixes == ("分开",)
    assert read.checkpoint == Path("/store/.work/train-k/checkpoint.pt")


def test_a_job_takes_no_field_it_does_not_name():
    with pytest.raises(ValidationError, match="extra_forbidden"):
        TrainJob.model_validate_json(job().model_dump_json()[:-1] + ', "epochs": 3}')


def test_a_result_read_back_from_its_json_is_the_same_result():
    written = TrainResult(
        sampler="consecutive",
        vocab_size=1027,
        epochs=3,
        perplexity=12.5,
        val_perplexity=None,
        samples=[{"epoch": 3, "prefix": "分开", "text": "分开了"}],
    )
    assert TrainResult.model_validate_json(written.model_dump_json()) == written


def test_each_event_is_read_back_as_the_event_written():
    resumed = Resumed(2, Path("/store/.work/train-k/checkpoint.pt"))
    ended = EpochEnd(3, 40, {"epoch": 3, "perplexity": 9.5, "val_perplexity": None}, [{"epoch": 3, "text": "分"}])
    assert event_from_json(event_json(resumed)) == resumed
    assert event_from_json(event_json(ended)) == ended
    assert isinstance(event_from_json(event_json(resumed)).checkpoint, Path)


def test_an_epoch_too_short_to_time_keeps_its_nan_rate():
    line = event_json(EpochEnd(1, 1, {"tokens_per_s": float("nan")}, []))
    assert math.isnan(event_from_json(line).metrics["tokens_per_s"])


def test_an_event_of_no_known_kind_is_refused():
    with pytest.raises(ValidationError, match="resumed"):
        event_from_json('{"epoch": 1, "kind": "finished"}')

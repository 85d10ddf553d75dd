"""The transformer on consecutive batches: refused by both training flows before any work, with its reason."""

import pytest

from flows.pipeline import batches, plain_runner, train, train_on
from tasks.batches import BatchesParams
from tasks.errors import ParameterError
from tasks.fetch import resolve_source
from tasks.train.params import TrainParams

TRANSFORMER = TrainParams(model="transformer", hidden=16, device="cpu")
REASON = "a Transformer does not have .*; use --sampler random"


def test_the_consecutive_sampler_is_refused_before_any_work(tmp_path, lyrics_zip):
    runner = plain_runner(tmp_path)
    located = resolve_source(str(lyrics_zip), "jaychou")
    with pytest.raises(ParameterError, match=REASON):
        train(runner, located, sampler=BatchesParams(sampler="consecutive"), training=TRANSFORMER)
    assert not (tmp_path / "ingest").exists()  # refused before the first stage
    made = batches(runner, located, sampler=BatchesParams(sampler="consecutive", epochs=1))
    with pytest.raises(ParameterError, match=REASON):
        train_on(runner, made.stages["batches"].key, TRANSFORMER)
    assert not (tmp_path / ".work").exists()  # no training began

"""The train flow: prepare, batches and training end to end; and training on existing batches.

Its sampler and training settings are flat parameters generated from `BatchesParams` and `TrainParams`
(defaults included), so a deployment takes `--param epochs=20`; the models check them before any work.
"""

from __future__ import annotations

from typing import Any

from artifacts.settings import environment
from flows import pipeline
from flows.compute import ConfiguredTaskRunner
from flows.params import flat_flow
from flows.pipeline import Prepared, PrepareParams, pick
from flows.prefect_tasks import PrefectRunner
from flows.run_page import show_parameters
from flows.run_words import resolved_source
from tasks.batches import BatchesParams
from tasks.clean import CleanParams
from tasks.fetch import resolve_source
from tasks.ingest import IngestParams
from tasks.train.params import TrainParams, resolve_device
from tasks.vocab import VocabParams


@flat_flow(
    "train", IngestParams, CleanParams, VocabParams, BatchesParams, TrainParams, task_runner=ConfiguredTaskRunner()
)
def train(source: str | None = None, name: str | None = None, sha256: str | None = None, **settings: Any) -> Prepared:
    """Prepare a corpus (the book's lyrics by default), cut its batches and train a model: the book's settings."""
    params = PrepareParams.of(settings)
    sampler = BatchesParams(**pick(BatchesParams, settings))
    training = TrainParams(**pick(TrainParams, settings))
    located = resolve_source(source, name, sha256, environment().data_path)
    show_parameters(
        {
            **resolved_source(located),
            **params.flat(),
            **sampler.model_dump(mode="json"),
            **resolve_device(training).model_dump(mode="json"),
        }
    )
    runner = PrefectRunner()
    made = pipeline.train(runner, located, params, sampler, training)
    runner.finish()
    return made


@flat_flow("train-batches", TrainParams, task_runner=ConfiguredTaskRunner())
def train_batches(batches: str, **settings: Any) -> dict:
    """Train on an existing batches artifact: a key, key prefix, folder or corpus@version/batches."""
    training = TrainParams(**pick(TrainParams, settings))
    show_parameters({"batches": batches, **resolve_device(training).model_dump(mode="json")})
    runner = PrefectRunner()
    made = pipeline.train_on(runner, batches, training)
    runner.finish()
    return made

"""The train flow: prepare, batches and training end to end; and training on existing batches.

Its sampler and training settings are flat parameters generated from `BatchesParams` and `TrainParams`
(defaults included), so a deployment takes `--param epochs=20`; the models check them before any work.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from artifacts.settings import environment
from flows import pipeline
from flows.compute import ConfiguredTaskRunner
from flows.params import flat_parameters, pick
from flows.pipeline import Prepared, PrepareParams
from flows.prefect_tasks import PrefectRunner
from flows.run_page import resolved_source, show_parameters
from tasks.batches import BatchesParams
from tasks.clean import CleanParams
from tasks.fetch import resolve_source
from tasks.ingest import IngestParams
from tasks.train.params import TrainParams, resolve_device
from tasks.vocab import VocabParams


@flow(name="train", task_runner=ConfiguredTaskRunner())
@flat_parameters(BatchesParams, TrainParams)
def train(
    source: str | None = None,
    name: str | None = None,
    sha256: str | None = None,
    ingest: IngestParams = IngestParams(),
    clean: CleanParams = CleanParams(),
    vocab: VocabParams = VocabParams(),
    **settings: Any,
) -> Prepared:
    """Prepare a corpus (the book's lyrics by default), cut its batches and train a model: the book's settings."""
    sampler = BatchesParams(**pick(BatchesParams, settings))
    training = TrainParams(**pick(TrainParams, settings))
    located = resolve_source(source, name, sha256, environment().data_path)
    show_parameters(
        {
            **resolved_source(located),
            "ingest": ingest,
            "clean": clean,
            "vocab": vocab,
            **sampler.model_dump(mode="json"),
            **resolve_device(training).model_dump(mode="json"),
        }
    )
    runner = PrefectRunner()
    made = pipeline.train(runner, located, PrepareParams(ingest=ingest, clean=clean, vocab=vocab), sampler, training)
    runner.finish()
    return made


@flow(name="train-batches", task_runner=ConfiguredTaskRunner())
def train_batches(batches: str, training: TrainParams = TrainParams()) -> dict:
    """Train on an existing batches artifact: a key, key prefix, folder or corpus@version/batches."""
    show_parameters({"batches": batches, "training": resolve_device(training)})
    runner = PrefectRunner()
    made = pipeline.train_on(runner, batches, training)
    runner.finish()
    return made

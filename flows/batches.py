"""The batches flow: prepare a corpus, then cut its indices into stored training batches."""

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
from tasks.vocab import VocabParams


@flat_flow("batches", IngestParams, CleanParams, VocabParams, BatchesParams, task_runner=ConfiguredTaskRunner())
def batches(source: str | None = None, name: str | None = None, sha256: str | None = None, **settings: Any) -> Prepared:
    """Prepare a corpus (the book's lyrics by default) and generate its minibatches."""
    params, sampler = PrepareParams.of(settings), BatchesParams(**pick(BatchesParams, settings))
    located = resolve_source(source, name, sha256, environment().data_path)
    show_parameters({**resolved_source(located), **params.flat(), **sampler.model_dump(mode="json")})
    runner = PrefectRunner()
    made = pipeline.batches(runner, located, params, sampler)
    runner.finish()
    return made

"""The prepare flow: ingest -> clean -> vocab -> encode, each a cached, versioned artifact."""

from __future__ import annotations

from typing import Any

from artifacts.settings import environment
from flows import pipeline
from flows.compute import ConfiguredTaskRunner
from flows.params import flat_flow
from flows.pipeline import Prepared, PrepareParams
from flows.prefect_tasks import PrefectRunner
from flows.run_page import show_parameters
from flows.run_words import resolved_source
from tasks.clean import CleanParams
from tasks.fetch import resolve_source
from tasks.ingest import IngestParams
from tasks.vocab import VocabParams


@flat_flow("prepare", IngestParams, CleanParams, VocabParams, task_runner=ConfiguredTaskRunner())
def prepare(source: str | None = None, name: str | None = None, sha256: str | None = None, **settings: Any) -> Prepared:
    """Prepare a corpus (the book's lyrics when `source` is omitted) for training."""
    params = PrepareParams.of(settings)
    located = resolve_source(source, name, sha256, environment().data_path)
    show_parameters({**resolved_source(located), **params.flat()})
    runner = PrefectRunner()
    made = pipeline.prepare(runner, located, params)
    runner.finish()
    return made

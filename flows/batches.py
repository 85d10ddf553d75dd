"""The batches flow: prepare a corpus, then cut its indices into stored training batches."""

from __future__ import annotations

from prefect import flow

from artifacts.settings import environment
from flows import pipeline
from flows.compute import ConfiguredTaskRunner
from flows.pipeline import Prepared, PrepareParams
from flows.prefect_tasks import PrefectRunner
from flows.run_page import resolved_source, show_parameters
from tasks.batches import BatchesParams
from tasks.clean import CleanParams
from tasks.fetch import resolve_source
from tasks.ingest import IngestParams
from tasks.vocab import VocabParams


@flow(name="batches", task_runner=ConfiguredTaskRunner())
def batches(
    source: str | None = None,
    name: str | None = None,
    sha256: str | None = None,
    ingest: IngestParams = IngestParams(),
    clean: CleanParams = CleanParams(),
    vocab: VocabParams = VocabParams(),
    sampler: BatchesParams = BatchesParams(),
) -> Prepared:
    """Prepare a corpus (the book's lyrics by default) and generate its minibatches."""
    located = resolve_source(source, name, sha256, environment().data_path)
    resolved = {**resolved_source(located), "ingest": ingest, "clean": clean, "vocab": vocab, "sampler": sampler}
    show_parameters(resolved)
    runner = PrefectRunner()
    made = pipeline.batches(runner, located, PrepareParams(ingest=ingest, clean=clean, vocab=vocab), sampler)
    runner.finish()
    return made

"""The batches flow: prepare a corpus, then cut its indices into stored training batches."""

from __future__ import annotations

from prefect import flow

from flows.prepare import Prepared, prepare
from tasks.batches import BatchesParams
from tasks.clean import CleanParams
from tasks.ingest import IngestParams
from tasks.prefect_tasks import batches_task, record_task, run_stage
from tasks.vocab import VocabParams


@flow(name="batches")
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
    prepared = prepare(source=source, name=name, sha256=sha256, ingest=ingest, clean=clean, vocab=vocab)
    made = run_stage(batches_task, indices=prepared.stages["encode"], params=sampler)
    record_task(prepared.corpus, prepared.version, {"batches": made})
    return prepared.model_copy(update={"stages": {**prepared.stages, "batches": made}})

"""The prepare flow: ingest -> clean -> vocab -> encode, each a cached, versioned artifact."""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel, ConfigDict

from artifacts.catalog import CorpusVersion
from artifacts.store import ArtifactRef
from tasks.clean import CleanParams
from tasks.ingest import IngestParams, resolve_source
from tasks.prefect_tasks import (
    clean_task,
    encode_task,
    fetch_task,
    ingest_task,
    record_task,
    register_task,
    run_stage,
    vocab_task,
)
from tasks.stages import EncodeParams
from tasks.vocab import VocabParams


class Prepared(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    corpus: str
    version: int
    new_version: bool
    sha256: str
    stages: dict[str, ArtifactRef]


@flow(name="prepare")
def prepare(
    source: str | None = None,
    name: str | None = None,
    sha256: str | None = None,
    ingest: IngestParams = IngestParams(),
    clean: CleanParams = CleanParams(),
    vocab: VocabParams = VocabParams(),
) -> Prepared:
    """Prepare a corpus (the book's lyrics when `source` is omitted) for training."""
    located = resolve_source(source, name, sha256)
    fetched = fetch_task(located.source, located.sha256, ingest.patterns)
    ingested = run_stage(ingest_task, fetched=fetched, params=ingest)
    version: CorpusVersion = register_task(located.name or fetched.name, fetched, ingested)
    cleaned = run_stage(clean_task, text=ingested, params=clean)
    vocabulary = run_stage(vocab_task, text=cleaned, params=vocab)
    encoded = run_stage(encode_task, text=cleaned, vocab=vocabulary, params=EncodeParams())
    outputs = {"ingest": ingested, "clean": cleaned, "vocab": vocabulary, "encode": encoded}
    record_task(version.corpus, version.version, outputs)
    return Prepared(
        corpus=version.corpus, version=version.version, new_version=version.new, sha256=fetched.sha256, stages=outputs
    )

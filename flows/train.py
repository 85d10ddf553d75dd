"""The train flow: prepare, batches and training end to end; and training on existing batches."""

from __future__ import annotations

from prefect import flow

from flows.batches import batches
from flows.prepare import Prepared
from tasks.batches import BatchesParams
from tasks.clean import CleanParams
from tasks.ingest import IngestParams
from tasks.prefect_tasks import find_task, record_task, run_stage, train_task
from tasks.train import TrainParams
from tasks.vocab import VocabParams


@flow(name="train")
def train(
    source: str | None = None,
    name: str | None = None,
    sha256: str | None = None,
    ingest: IngestParams = IngestParams(),
    clean: CleanParams = CleanParams(),
    vocab: VocabParams = VocabParams(),
    sampler: BatchesParams = BatchesParams(),
    training: TrainParams = TrainParams(),
) -> Prepared:
    """Prepare a corpus (the book's lyrics by default), cut its batches and train a model on them."""
    made = batches(source=source, name=name, sha256=sha256, ingest=ingest, clean=clean, vocab=vocab, sampler=sampler)
    model = run_stage(train_task, batches=made.stages["batches"], vocab=made.stages["vocab"], params=training)
    record_task(made.corpus, made.version, {"train": model})
    return made.model_copy(update={"stages": {**made.stages, "train": model}})


@flow(name="train-batches")
def train_batches(batches: str, training: TrainParams = TrainParams()) -> dict:
    """Train on an existing batches artifact (a key, key prefix or folder)."""
    stored = find_task("batches", batches)
    vocabulary = find_task("vocab", stored.summary["vocab_key"])
    model = run_stage(train_task, batches=stored, vocab=vocabulary, params=training)
    return {"batches": stored, "vocab": vocabulary, "train": model}

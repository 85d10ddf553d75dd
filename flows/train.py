"""The train flow: prepare, batches and training end to end; and training on existing batches.

Its sampler and training parameters are flat, so a deployment takes `--param epochs=20`; they are checked
by the same models as everywhere else (`BatchesParams`, `TrainParams`) before anything is computed.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow

from flows.batches import batches
from flows.prepare import Prepared
from tasks.batches import BatchesParams
from tasks.clean import CleanParams
from tasks.ingest import IngestParams
from tasks.prefect_tasks import find_task, record_task, run_stage, train_task
from tasks.train import BOOK_PREFIXES, TrainParams
from tasks.vocab import VocabParams


@flow(name="train")
def train(
    source: str | None = None,
    name: str | None = None,
    sha256: str | None = None,
    ingest: IngestParams = IngestParams(),
    clean: CleanParams = CleanParams(),
    vocab: VocabParams = VocabParams(),
    sampler: Literal["random", "consecutive"] = "random",
    batch_size: int = 32,
    num_steps: int = 35,
    epochs: int = 250,
    seed: int = 0,
    drop_last: bool = True,
    random_offset: bool = False,
    max_shard_rows: int = 65_536,
    val_fraction: float = 0.0,
    model: Literal["scratch", "rnn", "gru", "lstm"] = "scratch",
    hidden: int = 256,
    layers: int = 1,
    dropout: float = 0.0,
    optimizer: Literal["sgd", "adam"] = "sgd",
    lr: float = 100.0,
    clip: float | None = 0.01,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    pred_period: int = 50,
    prefixes: tuple[str, ...] = BOOK_PREFIXES,
    pred_chars: int = 50,
    checkpoint_every: int = 10,
) -> Prepared:
    """Prepare a corpus (the book's lyrics by default), cut its batches and train a model: the book's settings."""
    spec = BatchesParams(
        sampler=sampler,
        batch_size=batch_size,
        num_steps=num_steps,
        epochs=epochs,
        seed=seed,
        drop_last=drop_last,
        random_offset=random_offset,
        max_shard_rows=max_shard_rows,
        val_fraction=val_fraction,
    )
    training = TrainParams(
        model=model,
        hidden=hidden,
        layers=layers,
        dropout=dropout,
        optimizer=optimizer,
        lr=lr,
        clip=clip,
        seed=seed,
        device=device,
        pred_period=pred_period,
        prefixes=prefixes,
        pred_chars=pred_chars,
        checkpoint_every=checkpoint_every,
    )
    made = batches(source=source, name=name, sha256=sha256, ingest=ingest, clean=clean, vocab=vocab, sampler=spec)
    trained = run_stage(train_task, batches=made.stages["batches"], vocab=made.stages["vocab"], params=training)
    record_task(made.corpus, made.version, {"train": trained})
    return made.model_copy(update={"stages": {**made.stages, "train": trained}})


@flow(name="train-batches")
def train_batches(batches: str, training: TrainParams = TrainParams()) -> dict:
    """Train on an existing batches artifact (a key, key prefix or folder)."""
    stored = find_task("batches", batches)
    vocabulary = find_task("vocab", stored.summary["vocab_key"])
    trained = run_stage(train_task, batches=stored, vocab=vocabulary, params=training)
    return {"batches": stored, "vocab": vocabulary, "train": trained}

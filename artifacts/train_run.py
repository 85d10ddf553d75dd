"""A training job run on the store's files: the batches read back (this rank's rows of every batch), the
vocabulary, the held-out tail for validation; the model's files written by the first rank.

The one-process build and every torchrun rank (`flows.ddp_rank`) run `run_job` alike.
"""

from __future__ import annotations

from collections.abc import Callable

from artifacts.batch_reader import BatchReader
from artifacts.indices import read_indices_from
from artifacts.model import write_model
from artifacts.vocab import read_vocab
from tasks.train.events import Event
from tasks.train.job import TrainJob, TrainResult
from tasks.train.loop import Validation, train
from tasks.train.params import check_prefixes
from tasks.train.schedule import total_steps


def steps(reader: BatchReader) -> int:
    """Optimizer steps in the whole run: every stored epoch's batches (each rank steps on its rows of every one)."""
    info = reader.info
    if not info.batches_per_epoch:
        return total_steps(info.train_indices, info.spec)
    return sum(info.batches_in(0 if info.same_every_epoch else epoch) for epoch in range(info.epochs))


def run_job(
    job: TrainJob,
    *,
    rank: int = 0,
    world_size: int = 1,
    on_event: Callable[[Event], None] = lambda event: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> TrainResult:
    """Train as `job` says, as rank `rank` of `world_size` (DDP's process group is set up by the caller)."""
    # Several ranks take their rows of the same global batch: DDP's ranks must all take the same steps.
    reader = BatchReader(
        job.batches, rank=rank, world_size=world_size, split_rows=world_size > 1, expected_vocab_key=job.vocab_key
    )
    vocab = read_vocab(job.vocab)
    check_prefixes(vocab, job.params.prefixes)
    validation = None
    if job.held_out is not None:
        held_out = read_indices_from(job.held_out.encoded, job.held_out.start)  # (val_indices,)
        validation = Validation(held_out, reader.num_steps, reader.batch_size)
    job.checkpoint.parent.mkdir(parents=True, exist_ok=True)  # once the inputs are known good: no leftover
    trained = train(
        reader.epoch_batches,
        epochs=reader.epochs,
        carry_state=reader.sampler.carries_state,
        vocab=vocab,
        params=job.params,
        checkpoint=job.checkpoint,
        on_event=on_event,
        validation=validation,
        should_stop=should_stop,
        total_steps=steps(reader),
        context=reader.num_steps,
    )
    if rank == 0:
        write_model(job.output, trained, job.metadata, title=f"{job.params.model}, {reader.sampler} sampling")
    state, prefixes = trained.state, job.params.prefixes
    return TrainResult(
        sampler=reader.sampler.name,
        vocab_size=len(vocab),
        epochs=state.epoch,
        perplexity=state.metrics[-1]["perplexity"],
        val_perplexity=state.metrics[-1]["val_perplexity"],
        samples=state.samples[-len(prefixes) :] if prefixes else [],
        best_epoch=state.best_epoch,
        best_val_perplexity=state.best_val_perplexity,
        stopped_at=state.epoch if state.stopped_early else None,
    )

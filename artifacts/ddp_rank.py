"""What each rank of a multi-process training runs (`artifacts.ddp` launches it with torchrun): its rows of
every global batch, the model in DistributedDataParallel; the first rank writes the events, the checkpoints
and the model's files."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tasks.errors import CharflowError
from tasks.train.events import Event, Resumed


def main(job_file: str) -> None:
    """One rank: its rows of every batch, the model in DDP; the first rank writes what the task needs."""
    import torch
    import torch.distributed as dist

    from artifacts.batch_reader import BatchReader
    from artifacts.indices import read_indices_from
    from artifacts.model import write_model
    from artifacts.vocab import read_vocab
    from tasks.train.loop import Validation, train
    from tasks.train.params import TrainParams

    job = json.loads(Path(job_file).read_text())
    params = TrainParams.model_validate(job["params"])
    rank = int(os.environ["RANK"])
    try:
        if params.device == "cuda":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group(backend="nccl" if params.device == "cuda" else "gloo")
        world = dist.get_world_size()
        reader = BatchReader(
            job["batches"], rank=rank, world_size=world, split_rows=True, expected_vocab_key=job["vocab_key"]
        )
        vocab = read_vocab(Path(job["vocab"]))
        validation = None
        if job.get("encoded"):
            held_out = read_indices_from(Path(job["encoded"]), job["train_indices"])
            validation = Validation(held_out, reader.num_steps, reader.batch_size)

        def on_event(event: Event) -> None:
            if rank != 0:
                return
            if isinstance(event, Resumed):
                item = {"event": "resumed", "epoch": event.epoch, "checkpoint": str(event.checkpoint)}
            else:
                item = {"event": "epoch", "epoch": event.epoch, "epochs": event.epochs}
                item |= {"metrics": event.metrics, "samples": event.samples}
            with open(job["events"], "a") as out:
                out.write(json.dumps(item) + "\n")

        trained = train(
            reader.epoch_batches,
            epochs=reader.epochs,
            carry_state=reader.sampler.carries_state,
            vocab=vocab,
            params=params,
            checkpoint=Path(job["checkpoint"]),
            on_event=on_event,
            validation=validation,
        )
        if rank == 0:
            write_model(Path(job["output"]), trained, job["metadata"], title=job["title"])
            state = trained.state
            result = {"epochs": state.epoch, "metrics": state.metrics[-1], "samples": state.samples}
            Path(job["result"]).write_text(json.dumps(result))
        dist.barrier()
        dist.destroy_process_group()
    except CharflowError as exc:
        Path(job["work"], f"ddp-error-{rank}.txt").write_text(str(exc))
        raise


if __name__ == "__main__":
    main(sys.argv[1])

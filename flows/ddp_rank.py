"""What each rank of a multi-process training runs (`flows.ddp` launches it with torchrun): the job its launcher
wrote, on its rows of every global batch, the model in DistributedDataParallel; the first rank writes the
events, the checkpoints, the model's files and the result.

    python -m flows.ddp_rank WORK/ddp-job.json
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tasks.errors import CharflowError
from tasks.train.events import Event, event_json
from tasks.train.job import TrainJob


@dataclass(frozen=True)
class Exchange:
    """The files the launcher and the ranks share, in the run's work folder."""

    work: Path

    @property
    def job(self) -> Path:
        return self.work / "ddp-job.json"

    @property
    def events(self) -> Path:  # the first rank's events, a JSON line each
        return self.work / "ddp-events.jsonl"

    @property
    def result(self) -> Path:
        return self.work / "ddp-result.json"

    @property
    def log(self) -> Path:  # torchrun's and the ranks' output
        return self.work / "ddp.log"

    def error(self, rank: int) -> Path:  # a rank's own one-line error
        return self.work / f"ddp-error-{rank}.txt"


def main(job_file: str) -> None:
    """One rank: its rows of every batch, the model in DDP; the first rank writes what the task needs."""
    import torch
    import torch.distributed as dist

    from artifacts.train_run import run_job

    exchange = Exchange(Path(job_file).parent)
    job = TrainJob.model_validate_json(Path(job_file).read_text())
    rank = int(os.environ["RANK"])

    def relay(event: Event) -> None:
        with exchange.events.open("a") as out:
            out.write(event_json(event) + "\n")

    try:
        if job.params.device == "cuda":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group(backend="nccl" if job.params.device == "cuda" else "gloo")
        result = run_job(
            job, rank=rank, world_size=dist.get_world_size(), on_event=relay if rank == 0 else lambda event: None
        )
        if rank == 0:
            exchange.result.write_text(result.model_dump_json())
        dist.barrier()
        dist.destroy_process_group()
    except CharflowError as exc:
        exchange.error(rank).write_text(str(exc))
        raise


if __name__ == "__main__":
    main(sys.argv[1])

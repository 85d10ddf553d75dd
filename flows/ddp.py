"""The train stage on several processes: the train task launches `torchrun --standalone`, and each rank runs
`flows.ddp_rank` on the training job, on its rows of every global batch with DistributedDataParallel (gloo on
the CPU, NCCL on GPUs). The first rank writes the checkpoints, the events and the model's files; the task
returns the model artifact as ever.

    python -m torch.distributed.run --standalone --nproc-per-node N -m flows.ddp_rank WORK/ddp-job.json

This module launches and reports; `flows.ddp_rank` is what each rank runs. Both are part of the train key.
No Prefect: the stage's build is handed `launch` by its runner.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from flows.ddp_rank import Exchange
from tasks.errors import CharflowError, Interrupted, ParameterError
from tasks.train.events import Event, event_from_json
from tasks.train.job import TrainJob, TrainResult

POLL_SECONDS = 0.2
log = logging.getLogger("charflow.ddp")


class DistributedTrainingFailed(CharflowError):
    """A rank of a multi-process training ended with an error or was killed."""


def check_processes(nproc: int, device: str, batch_size: int) -> None:
    """Refused before any process starts: a global batch that does not split, or more processes than devices."""
    if batch_size % nproc:
        raise ParameterError(
            f"--batch-size {batch_size} does not split among --nproc {nproc} processes (each takes batch_size / "
            "nproc rows of every global batch); choose a batch size divisible by nproc"
        )
    if device == "cuda":
        import torch

        if nproc > torch.cuda.device_count():
            raise ParameterError(
                f"--nproc {nproc} but {torch.cuda.device_count()} CUDA devices are visible; at most one process a GPU"
            )
    elif nproc > (os.cpu_count() or 1):
        raise ParameterError(f"--nproc {nproc} but this machine has {os.cpu_count()} CPU cores; use at most that many")


def launch(
    job: TrainJob, work: Path, on_event: Callable[[Event], None], should_stop: Callable[[], bool]
) -> TrainResult:
    """Run torchrun on `job` (on its `nproc` processes) and relay the first rank's events as they come; its
    result, or one clear error.

    A rank that aborts inside the C++ runtime (SIGABRT, no Python error) is run again once, from the checkpoint:
    resuming gives the numbers of an uninterrupted run. It was seen twice in some thirty test runs on this
    2-core machine, in gloo, and not explained (PYTHONFAULTHANDLER leaves the aborting rank's stack in ddp.log).
    """
    exchange, nproc = Exchange(work), job.params.nproc
    work.mkdir(parents=True, exist_ok=True)
    exchange.job.write_text(job.model_dump_json())
    for attempt in (1, 2):
        for stale in (exchange.events, exchange.result, *work.glob("ddp-error-*.txt")):
            stale.unlink(missing_ok=True)
        code = _run_torchrun(exchange, nproc, on_event, should_stop, job.checkpoint)
        if code == 0:
            return TrainResult.model_validate_json(exchange.result.read_text())
        aborted = "exitcode  : -6" in exchange.log.read_text(errors="replace")
        if attempt == 1 and aborted and not list(work.glob("ddp-error-*.txt")):
            shutil.copy(exchange.log, work / "ddp-aborted.log")
            log.warning("a rank aborted (SIGABRT) in training on %d processes: resuming once (%s)", nproc, work)
            continue
        raise DistributedTrainingFailed(_failure(exchange, nproc) + _kept(job.checkpoint))
    raise AssertionError("unreachable")


def _run_torchrun(
    exchange: Exchange,
    nproc: int,
    on_event: Callable[[Event], None],
    should_stop: Callable[[], bool],
    checkpoint: Path,
) -> int:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}  # a rank that crashes in C++ leaves its Python stack in the log
    with exchange.log.open("w") as out:
        proc = subprocess.Popen(
            [*command, "-m", "flows.ddp_rank", str(exchange.job)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
        relayed = 0
        try:
            while proc.poll() is None:
                relayed = _relay(exchange.events, relayed, on_event)
                if should_stop():
                    proc.terminate()
                    proc.wait()
                    raise Interrupted(f"training on {nproc} processes stopped{_kept(checkpoint)}")
                time.sleep(POLL_SECONDS)
            _relay(exchange.events, relayed, on_event)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode


def _relay(events: Path, done: int, on_event: Callable[[Event], None]) -> int:
    if not events.exists():
        return done
    text = events.read_text()  # once: a second read could end a line the first one saw half of
    complete = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]
    for line in complete[done:]:
        on_event(event_from_json(line))
    return len(complete)


def _kept(checkpoint: Path) -> str:
    if checkpoint.exists():
        return f"; the last checkpoint is kept at {checkpoint}, and a rerun with the same --nproc resumes from it"
    return "; no checkpoint was saved yet, so a rerun starts over"


def _failure(exchange: Exchange, nproc: int) -> str:
    """What ended the run: a rank's own one-line error, else the rank torchrun reports and how it ended."""
    for error in sorted(exchange.work.glob("ddp-error-*.txt")):
        return f"rank {error.stem.rsplit('-', 1)[1]} of {nproc}: {error.read_text().strip()}"
    log = exchange.log.read_text(errors="replace")
    # torchrun's report names the first rank to fail under "Root Cause"; the others it stopped come before.
    root_cause = log[log.find("Root Cause") :] if "Root Cause" in log else log
    found = re.search(r"rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", root_cause, re.S)
    if found:
        rank, code = found.group(1), int(found.group(2))
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return f"training on {nproc} processes failed: rank {rank} {how}; the other ranks were stopped"
    return f"training on {nproc} processes failed; torchrun's log: {exchange.log}"

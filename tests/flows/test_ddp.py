"""Training on several processes (torchrun, DDP with gloo on the CPU): the same parameters as one process at
the same global batch, clear refusals, and a killed rank that stops the others and leaves a checkpoint to
resume from."""

import os
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from artifacts.model import METRICS_FILE, WEIGHTS_FILE
from flows.ddp import DistributedTrainingFailed
from flows.pipeline import PrepareParams, batches, plain_runner, train, train_on
from tasks.batches import BatchesParams
from tasks.errors import ParameterError
from tasks.fetch import resolve_source
from tasks.train.events import Resumed
from tasks.train.params import TrainParams

pytestmark = pytest.mark.slow


def trained(root, lyrics_zip, nproc, sampler="consecutive", epochs=3, batch_size=8, on_event=None, **training):
    settings = {
        "model": "rnn",
        "hidden": 32,
        "optimizer": "adam",
        "lr": 1e-3,
        "device": "cpu",
        "prefixes": ("分开",),
        "pred_chars": 5,
        "pred_period": 3,
        "checkpoint_every": 1,
        **training,
    }
    return train(
        plain_runner(root, **({"on_event": on_event} if on_event else {})),
        resolve_source(str(lyrics_zip), "jaychou"),
        PrepareParams(),
        BatchesParams(sampler=sampler, batch_size=batch_size, num_steps=10, epochs=epochs),
        TrainParams(nproc=nproc, **settings),
    ).stages["train"]


TRANSFORMER = {"model": "transformer", "hidden": 16, "layers": 1, "heads": 2}


@pytest.mark.parametrize(
    ("sampler", "model"),
    [("consecutive", {}), ("random", {}), ("random", TRANSFORMER)],
    ids=["consecutive", "random", "transformer"],
)
def test_two_processes_give_the_parameters_of_one(tmp_path, lyrics_zip, sampler, model):
    one = trained(tmp_path / "one", lyrics_zip, 1, sampler, **model)
    two = trained(tmp_path / "two", lyrics_zip, 2, sampler, **model)
    assert one.key != two.key  # nproc is keyed: the sums run in another order
    alone, together = (torch.load(r.path / WEIGHTS_FILE, weights_only=True) for r in (one, two))
    assert alone.keys() == together.keys()
    for name, weight in alone.items():
        # Adam divides by the gradients' running norm: the Transformer's tiny gradients (attention, LayerNorm)
        # carry the sums' other order into the 5th digit after 3 epochs.
        tolerance = {"rtol": 1e-4, "atol": 1e-5} if model else {"rtol": 1e-5, "atol": 1e-6}
        assert torch.allclose(together[name], weight, **tolerance), (name, (together[name] - weight).abs().max())
    curves = [pq.read_table(r.path / METRICS_FILE).column("perplexity").to_pylist() for r in (one, two)]
    assert len(curves[0]) == 3
    assert curves[1] == pytest.approx(curves[0], rel=1e-5)
    assert two.summary["samples"]
    assert two.summary["epochs"] == 3


def test_a_batch_that_does_not_split_or_too_many_processes_are_refused_before_any_work(tmp_path, lyrics_zip):
    with pytest.raises(ParameterError, match="--batch-size 8 does not split among --nproc 3 processes"):
        trained(tmp_path, lyrics_zip, 3)
    assert not (tmp_path / "ingest").exists()  # refused before the first stage
    with pytest.raises(ParameterError, match=f"--nproc 64 but this machine has {os.cpu_count()} CPU cores"):
        trained(tmp_path, lyrics_zip, 64, batch_size=64)


def test_training_on_stored_batches_that_do_not_split_is_refused_before_training(tmp_path, lyrics_zip):
    runner = plain_runner(tmp_path)
    made = batches(runner, resolve_source(str(lyrics_zip), "jaychou"), sampler=BatchesParams(batch_size=8, epochs=1))
    with pytest.raises(ParameterError, match="--batch-size 8 does not split among --nproc 3 processes"):
        train_on(runner, made.stages["batches"].key, TrainParams(nproc=3, device="cpu"))
    assert not (tmp_path / ".work").exists()  # no training began


def ranks_of(work_root: Path) -> dict[int, int]:
    """Rank -> pid of the running `flows.ddp_rank` processes under this test's folder."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")
            environ = dict(item.split(b"=", 1) for item in (proc / "environ").read_bytes().split(b"\0") if b"=" in item)
        except OSError:
            continue
        mine = b"flows.ddp_rank" in command and any(str(work_root).encode() in part for part in command)
        if mine and b"RANK" in environ:  # a rank, not torchrun's own agent
            found[int(environ[b"RANK"])] = int(proc.name)
    return found


def test_a_killed_rank_stops_the_others_keeps_the_checkpoint_and_the_rerun_resumes(tmp_path, lyrics_zip):
    root = tmp_path / "store"
    killed = []

    def kill_rank_1_after_a_checkpoint():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            checkpoints = list(root.glob(".work/train-*/checkpoint.pt"))
            ranks = ranks_of(root)
            if checkpoints and 1 in ranks:
                os.kill(ranks[1], signal.SIGKILL)
                killed.append(ranks[1])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_rank_1_after_a_checkpoint)
    killer.start()
    with pytest.raises(DistributedTrainingFailed) as failed:
        trained(root, lyrics_zip, 2, epochs=40)
    killer.join()
    message = str(failed.value)
    assert killed, message
    assert "rank 1 was killed by signal 9" in message, message
    assert "the last checkpoint is kept at" in message
    assert "a rerun with the same --nproc resumes from it" in message
    assert not list(root.glob("train/*"))  # nothing published
    events = []
    made = trained(root, lyrics_zip, 2, epochs=40, on_event=events.append)
    resumed = [e for e in events if isinstance(e, Resumed)]
    assert resumed
    assert resumed[0].epoch >= 1
    assert made.summary["epochs"] == 40


def test_early_stopping_is_decided_once_and_every_rank_stops_there(tmp_path, lyrics_zip):
    """Only the first rank validates: its decision is broadcast, or the other rank would wait in the next epoch's
    gradient exchange for ever. One process and two stop at the same epoch, with the same best epoch."""
    spec = BatchesParams(batch_size=8, num_steps=10, epochs=12, val_fraction=0.1)
    settings = {"model": "rnn", "hidden": 32, "optimizer": "adam", "lr": 0.05, "device": "cpu", "patience": 1}
    summaries = [
        train(
            plain_runner(tmp_path / str(nproc)),
            resolve_source(str(lyrics_zip), "jaychou"),
            PrepareParams(),
            spec,
            TrainParams(nproc=nproc, prefixes=("分开",), pred_chars=5, **settings),
        )
        .stages["train"]
        .summary
        for nproc in (1, 2)
    ]
    one, two = summaries
    assert two["stopped_at"] is not None
    assert two["stopped_at"] < 12
    assert (two["stopped_at"], two["best_epoch"], two["epochs"]) == (
        one["stopped_at"],
        one["best_epoch"],
        one["epochs"],
    )
    assert two["checkpoint"] == "best"

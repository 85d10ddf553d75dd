"""The training loop: the book's procedure (perplexity, clipping, hidden state per sampler), resumable, sync-free.

Inside an epoch nothing waits for the device: the loss and gradient norm add up on it and are read once per
epoch. What happens is reported as events (`Resumed`, `EpochEnd`) to a callback: how they are shown is not
the loop's business, so rewording a progress line changes no model's key.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from tasks.errors import CharflowError, Interrupted
from tasks.train.checkpoint import TrainState, load_checkpoint, save_checkpoint
from tasks.train.events import EpochEnd, Event, Resumed
from tasks.train.generate import continue_text
from tasks.train.model import CharModel, build_model
from tasks.train.params import TrainParams, resolve_device
from tasks.train.scoring import MAX_LOSS, score
from tasks.train.step import TrainStep
from tasks.vocab import Vocab

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


class TrainingDiverged(CharflowError):
    """The loss became NaN or infinite."""


class OutOfDeviceMemory(CharflowError):
    """The device ran out of memory, reported with the sizes that caused it."""


class EmptyEpoch(CharflowError):
    """An epoch gave no batch to train on."""


@dataclass(frozen=True)
class Validation:
    """Held-out indices, read as `streams` parallel streams `num_steps` at a time."""

    indices: np.ndarray  # (n,) integers
    num_steps: int
    streams: int


class Trained(NamedTuple):
    model: CharModel
    optimizer: torch.optim.Optimizer
    state: TrainState


def make_optimizer(model: nn.Module, params: TrainParams) -> torch.optim.Optimizer:
    if params.optimizer == "adam" and params.device == "cuda":
        # One fused kernel for the update, where the multi-tensor form launches a dozen; capturable keeps the
        # step count on the device, as a CUDA graph needs.
        return torch.optim.Adam(model.parameters(), lr=params.lr, fused=True, capturable=params.cuda_graph)
    if params.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=params.lr)
    return torch.optim.SGD(model.parameters(), lr=params.lr)


def train(
    epoch_batches: Callable[[int], Batches],
    *,
    epochs: int,
    carry_state: bool,
    vocab: Vocab,
    params: TrainParams,
    checkpoint: Path | None = None,
    on_event: Callable[[Event], None] = lambda event: None,
    validation: Validation | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    context: int | None = None,
) -> Trained:
    """Train for `epochs`, resuming from `checkpoint` when it exists (it belongs to these very settings).

    `epoch_batches(e)` gives epoch e's (X, Y) pairs, (batch, num_steps) integers each; `carry_state` is the
    consecutive sampler's hidden state carried (detached) across batches, from zero at each epoch's start.
    `should_stop()` is asked after every batch: when it says so, training stops there (`Interrupted`), and
    a rerun resumes from the last checkpoint. `context`: the Transformer's window, the batches' num_steps.
    """
    params = resolve_device(params)
    device = torch.device(params.device)
    # Under torchrun (DDP): every rank trains on its rows of each global batch; the first one keeps the books.
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    leader = not distributed or torch.distributed.get_rank() == 0
    torch.manual_seed(params.seed)
    model = build_model(len(vocab), params, context).to(device)
    optimizer = make_optimizer(model, params)
    state = TrainState()
    saved: int | None = None  # the epoch of the checkpoint on disk
    if checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint, model, optimizer)
        saved = state.epoch
        on_event(Resumed(state.epoch, checkpoint))
    net: nn.Module = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.cuda.current_device()] if device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=ids)  # averages the ranks' gradients in the backward
    step = TrainStep(net, optimizer, params, carry_state)
    for epoch in range(state.epoch, epochs):
        started = time.perf_counter()
        batches = epoch_batches(epoch)
        loss_sum, norm_sum, tokens, steps = run_epoch(step, batches, should_stop)
        if distributed:  # every rank's tokens and loss: the epoch's perplexity is the global batch's
            totals = torch.tensor([loss_sum.item(), float(tokens)], dtype=torch.float64, device=device)
            torch.distributed.all_reduce(totals)
            loss_sum, tokens = totals[0], int(totals[1].item())
        if should_stop():
            raise Interrupted(f"training stopped in epoch {epoch + 1} of {epochs}{kept(saved, checkpoint)}")
        if steps == 0:
            raise EmptyEpoch(f"epoch {epoch + 1} has no batch to train on; check the batches artifact")
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        mean_loss = loss_sum.item() / tokens
        if not math.isfinite(mean_loss) or mean_loss > MAX_LOSS:
            raise TrainingDiverged(
                f"the loss became {mean_loss} in epoch {epoch + 1} (optimizer {params.optimizer}, lr {params.lr}, "
                f"clip {params.clip}){kept(saved, checkpoint)}; lower the learning rate or clip gradients"
            )
        state.metrics.append(
            {
                "epoch": epoch + 1,
                "perplexity": math.exp(mean_loss),
                "val_perplexity": None if validation is None or not leader else evaluate(model, validation, device),
                "tokens_per_s": tokens / seconds if seconds else float("nan"),
                "grad_norm": norm_sum.item() / steps,
                "seconds": seconds,
            }
        )
        state.epoch = epoch + 1
        samples = []
        if leader and (state.epoch % params.pred_period == 0 or state.epoch == epochs):
            samples = [
                {
                    "epoch": state.epoch,
                    "prefix": prefix,
                    "text": continue_text(model, vocab, prefix, params.pred_chars, device),
                }
                for prefix in params.prefixes
            ]
            state.samples.extend(samples)
        if checkpoint is not None and (state.epoch % params.checkpoint_every == 0 or state.epoch == epochs):
            if leader:
                save_checkpoint(checkpoint, model, optimizer, state)
            saved = state.epoch
        on_event(EpochEnd(state.epoch, epochs, state.metrics[-1], samples))
    return Trained(model, optimizer, state)


def run_epoch(
    step: TrainStep, batches: Batches, should_stop: Callable[[], bool] = lambda: False
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """One pass over the batches (cut short when `should_stop()`): the summed token loss and gradient norm (on
    the device), tokens and steps."""
    params = step.params
    step.start_epoch()
    tokens = steps = 0
    for x, y in batches:
        try:
            step(x, y)
        except torch.OutOfMemoryError as exc:
            raise OutOfDeviceMemory(
                f"{step.device.type} ran out of memory at batch size {x.shape[0]}, num_steps {x.shape[1]}, hidden "
                f"{params.hidden} ({params.model}, {params.precision}); lower --batch-size or --hidden, or free "
                "the device"
            ) from exc
        tokens += y.numel()
        steps += 1
        if should_stop():
            break
    return step.loss_sum, step.norm_sum, tokens, steps


def kept(saved: int | None, checkpoint: Path | None) -> str:
    """What a rerun resumes from: the checkpoint on disk, named, or none yet."""
    if checkpoint is None:
        return ""
    if saved is None:
        return "; no checkpoint was saved yet, so a rerun starts over"
    return f"; the last good checkpoint (epoch {saved}) is kept at {checkpoint}, and a rerun resumes from it"


def evaluate(model: CharModel, validation: Validation, device: torch.device) -> float:
    """Perplexity on the held-out indices (`tasks.train.scoring`)."""
    return score(
        model, validation.indices, num_steps=validation.num_steps, streams=validation.streams, device=device
    ).perplexity

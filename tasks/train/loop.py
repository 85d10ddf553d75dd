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
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from tasks.allocator import keep_freed_memory
from tasks.errors import CharflowError, Interrupted
from tasks.train.checkpoint import TrainState, load_checkpoint, save_checkpoint
from tasks.train.events import EpochEnd, Event, Resumed
from tasks.train.generate import continue_text
from tasks.train.model import CharModel, build_model
from tasks.train.params import TrainParams, check_warmup, resolve_device
from tasks.train.schedule import Schedule
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
    # A changing rate takes the eager step (tasks.train.step), where a capturable optimizer only warns.
    capturable = params.cuda_graph and params.constant_lr
    if params.optimizer == "adamw":
        # As nanoGPT: the matrices decay, the 1-D weights (biases, LayerNorm scales) do not. Embeddings are
        # matrices here and decay with the rest.
        weights = list(model.parameters())
        groups = [
            {"params": [w for w in weights if w.dim() >= 2], "weight_decay": params.weight_decay},
            {"params": [w for w in weights if w.dim() < 2], "weight_decay": 0.0},
        ]
        groups = [group for group in groups if group["params"]]
        if params.device == "cuda":
            return torch.optim.AdamW(groups, lr=params.lr, fused=True, capturable=capturable)
        return torch.optim.AdamW(groups, lr=params.lr)
    if params.optimizer == "adam" and params.device == "cuda":
        # One fused kernel for the update, where the multi-tensor form launches a dozen; capturable keeps the
        # step count on the device, as a CUDA graph needs.
        return torch.optim.Adam(model.parameters(), lr=params.lr, fused=True, capturable=capturable)
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
    total_steps: int | None = None,
    context: int | None = None,
) -> Trained:
    """Train for `epochs`, resuming from `checkpoint` when it exists (it belongs to these very settings).

    `epoch_batches(e)` gives epoch e's (X, Y) pairs, (batch, num_steps) integers each; `carry_state` is the
    consecutive sampler's hidden state carried (detached) across batches, from zero at each epoch's start.
    `should_stop()` is asked after every batch: when it says so, training stops there (`Interrupted`), and
    a rerun resumes from the last checkpoint. `context`: the Transformer's window, the batches' num_steps.

    With `validation`, every `eval_every` epochs (and the last) the held-out perplexity is taken, the best
    weights kept (`state.best_weights`) and, with `patience`, training stops after that many validations without
    a better one. `total_steps`: the run's optimizer steps, for a learning-rate schedule (counted from
    `epoch_batches` where not given).
    """
    params = resolve_device(params)
    keep_freed_memory()  # a step's activations and gradients, reused warm: 10-20% of a CPU step was page faults
    schedule = make_schedule(params, epoch_batches, epochs, total_steps)
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
    net = ddp(model, device) if distributed else model
    step = TrainStep(net, optimizer, params, carry_state, schedule, state.steps)
    # A run that stopped early and was saved so is finished: nothing more to train.
    for epoch in range(epochs if state.stopped_early else state.epoch, epochs):
        started = time.perf_counter()
        step.epoch = epoch
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
        validates = validation is not None and ((epoch + 1) % params.eval_every == 0 or epoch + 1 == epochs)
        val_perplexity = validate(model, validation, device) if validates and leader else None
        state.metrics.append(
            {
                "epoch": epoch + 1,
                "perplexity": math.exp(mean_loss),
                "val_perplexity": val_perplexity,
                "tokens_per_s": tokens / seconds if seconds else float("nan"),
                "grad_norm": norm_sum.item() / steps,
                "seconds": seconds,
            }
        )
        state.epoch = epoch + 1
        state.steps = step.steps
        # Only validations count towards patience; stopping at the last epoch is no early stop.
        state.stopped_early = (
            validates and stops(state, model, val_perplexity, params.patience, distributed) and epoch + 1 < epochs
        )
        last = state.epoch == epochs or state.stopped_early
        samples = []
        if leader and (state.epoch % params.pred_period == 0 or last):
            samples = take_samples(model, vocab, params, state.epoch, device)
            state.samples.extend(samples)
        if checkpoint is not None and (state.epoch % params.checkpoint_every == 0 or last):
            if leader:
                save_checkpoint(checkpoint, model, optimizer, state)
            saved = state.epoch
        on_event(EpochEnd(state.epoch, epochs, state.metrics[-1], samples))
        if state.stopped_early:
            break
    return Trained(model, optimizer, state)


def ddp(model: CharModel, device: torch.device) -> nn.Module:
    """The model wrapped to average the ranks' gradients in the backward."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def validate(model: CharModel, validation: Validation | None, device: torch.device) -> float | None:
    return None if validation is None else evaluate(model, validation, device)


def take_samples(
    model: CharModel, vocab: Vocab, params: TrainParams, epoch: int, device: torch.device
) -> list[dict[str, Any]]:
    """The greedy continuation of every prefix (the book's predictions)."""
    return [
        {"epoch": epoch, "prefix": prefix, "text": continue_text(model, vocab, prefix, params.pred_chars, device)}
        for prefix in params.prefixes
    ]


def make_schedule(
    params: TrainParams, epoch_batches: Callable[[int], Batches], epochs: int, total_steps: int | None
) -> Schedule | None:
    """The learning-rate schedule, None where the rate is constant; a warmup longer than training refused."""
    if params.constant_lr:
        return None
    if total_steps is None:
        total_steps = sum(1 for epoch in range(epochs) for _ in epoch_batches(epoch))
    check_warmup(params, total_steps)
    return Schedule.of(params, total_steps)


def stops(
    state: TrainState, model: nn.Module, val_perplexity: float | None, patience: int | None, distributed: bool
) -> bool:
    """After a validation (`val_perplexity` None on the ranks that do not validate): whether to stop early."""
    stop = val_perplexity is not None and keep_best(state, model, val_perplexity, patience)
    if distributed and patience is not None:
        stop = decided_by_leader(stop, next(model.parameters()).device)  # every rank stops at the same epoch
    return stop


def keep_best(state: TrainState, model: nn.Module, val_perplexity: float, patience: int | None) -> bool:
    """Record a validation: a better perplexity keeps the weights (a CPU copy) and its epoch; True when `patience`
    validations in a row have not bettered the best."""
    if state.best_val_perplexity is None or val_perplexity < state.best_val_perplexity:
        state.best_val_perplexity, state.best_epoch, state.stale = val_perplexity, state.epoch, 0
        state.best_weights = {name: value.detach().to("cpu", copy=True) for name, value in model.state_dict().items()}
    else:
        state.stale += 1
    return patience is not None and state.stale >= patience


def decided_by_leader(stop: bool, device: torch.device) -> bool:
    """Rank 0's decision, sent to every rank (only rank 0 validates)."""
    flag = torch.tensor([1 if stop else 0], dtype=torch.int64, device=device)
    torch.distributed.broadcast(flag, src=0)
    return bool(flag.item())


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

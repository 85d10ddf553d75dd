"""Training: the book's procedure (perplexity, clipping, hidden state per sampler), resumable, sync-free.

No Prefect here: this runs as it is on a GPU machine. Inside an epoch nothing waits for the device: the loss
and gradient norm add up on it and are read once per epoch.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from tasks.model import ModelParams, build_model, detach, predict
from tasks.progress import Progress

BOOK_PREFIXES = ("分开", "不分开")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class OutOfDeviceMemory(RuntimeError):
    """The device ran out of memory, reported with the sizes that caused it."""


class TrainParams(ModelParams):
    """The book's scratch-RNN settings by default: SGD, lr 100, clipping at 0.01, samples every 50 epochs."""

    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(default=100.0, gt=0)
    clip: float | None = Field(default=0.01, gt=0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    pred_period: int = Field(default=50, gt=0)
    prefixes: tuple[str, ...] = BOOK_PREFIXES
    pred_chars: int = Field(default=50, ge=0)
    checkpoint_every: int = Field(default=10, gt=0)

    @model_validator(mode="after")
    def _resolve_device(self) -> TrainParams:
        # Resolved here so that the device, which changes the numbers, is part of the content key.
        if self.device == "auto":
            object.__setattr__(self, "device", "cuda" if torch.cuda.is_available() else "cpu")
        elif self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' but no CUDA device is visible; use --device cpu or auto")
        for prefix in self.prefixes:
            if not prefix:
                raise ValueError("a prediction prefix must have at least one character")
        return self


@dataclass
class TrainState:
    """Everything a run needs to continue where it stopped."""

    epoch: int = 0  # epochs completed
    metrics: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)


def make_optimizer(model: nn.Module, params: TrainParams) -> torch.optim.Optimizer:
    if params.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=params.lr)
    return torch.optim.SGD(model.parameters(), lr=params.lr)


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: TrainState) -> None:
    """Atomically: a kill mid-write leaves the previous checkpoint."""
    partial = path.with_suffix(".partial")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": state.epoch,
            "metrics": state.metrics,
            "samples": state.samples,
            "rng": torch.get_rng_state(),
        },
        partial,
    )
    os.replace(partial, path)


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> TrainState:
    data = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(data["model"])
    optimizer.load_state_dict(data["optimizer"])
    torch.set_rng_state(data["rng"])
    return TrainState(epoch=data["epoch"], metrics=data["metrics"], samples=data["samples"])


def train(
    epoch_batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    *,
    epochs: int,
    carry_state: bool,
    vocab_size: int,
    encode: Callable[[str], list[int]],
    decode: Callable[[list[int]], str],
    params: TrainParams,
    checkpoint: Path | None = None,
    log: Callable[[str], None] = print,
    validation: np.ndarray | None = None,
) -> tuple[nn.Module, torch.optim.Optimizer, TrainState]:
    """Train for `epochs`, resuming from `checkpoint` when it holds a run of the same settings.

    `epoch_batches(e)` gives epoch e's (X, Y) pairs, (batch, num_steps) integers each; `carry_state` is the
    consecutive sampler's hidden state carried (detached) across batches, from zero at each epoch's start.
    `validation`, held-out indices, gives a validation perplexity after every epoch.
    """
    device = torch.device(params.device)
    torch.manual_seed(params.seed)
    model = build_model(vocab_size, params).to(device)
    optimizer = make_optimizer(model, params)
    state = TrainState()
    if checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint, model, optimizer)
        log(f"resuming after epoch {state.epoch} from {checkpoint}")
    weights = [p for p in model.parameters()]
    progress = Progress(epochs - state.epoch, f"training {params.model}", log)
    try:
        for epoch in range(state.epoch, epochs):
            started = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            norm_sum = torch.zeros((), device=device)
            tokens = steps = 0
            hidden = None
            for x, y in epoch_batches(epoch):
                x = x.to(device, non_blocking=True)  # (batch, num_steps)
                y = y.to(device, non_blocking=True).long()  # (batch, num_steps)
                if hidden is None or not carry_state or hidden_rows(hidden) != x.shape[0]:
                    hidden = model.init_state(x.shape[0], device)
                else:
                    hidden = detach(hidden)
                try:
                    logits, hidden = model(x, hidden)  # (batch, num_steps, vocab)
                    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                except torch.OutOfMemoryError as exc:
                    raise OutOfDeviceMemory(
                        f"{device.type} ran out of memory at batch size {x.shape[0]}, num_steps {x.shape[1]}, hidden "
                        f"{params.hidden} ({params.model}); lower --batch-size or --hidden, or free the device"
                    ) from exc
                norm = clip_by_global_norm(weights, params.clip)
                optimizer.step()
                loss_sum += loss.detach() * y.numel()
                norm_sum += norm
                tokens += y.numel()
                steps += 1
                shape = (x.shape[1], x.shape[0])  # (num_steps, batch) for validation
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            mean_loss = loss_sum.item() / max(tokens, 1)
            # Past 700 nats exp() overflows: the run has diverged as surely as with a NaN.
            if not math.isfinite(mean_loss) or mean_loss > 700:
                where = (
                    f"; the last good checkpoint (epoch {state.epoch}) is kept at {checkpoint}" if checkpoint else ""
                )
                raise TrainingDiverged(
                    f"the loss became {mean_loss} in epoch {epoch + 1} (optimizer {params.optimizer}, lr {params.lr}, "
                    f"clip {params.clip}){where}; lower the learning rate or clip gradients"
                )
            row = {
                "epoch": epoch + 1,
                "perplexity": math.exp(mean_loss),
                "val_perplexity": None if validation is None else evaluate(model, validation, *shape, device),
                "tokens_per_s": tokens / seconds if seconds else float("nan"),
                "grad_norm": norm_sum.item() / max(steps, 1),
                "seconds": seconds,
            }
            state.metrics.append(row)
            state.epoch = epoch + 1
            if state.epoch % params.pred_period == 0 or state.epoch == epochs:
                for prefix in params.prefixes:
                    text = decode(predict(model, encode(prefix), params.pred_chars, device))
                    state.samples.append({"epoch": state.epoch, "prefix": prefix, "text": text})
                log(f"epoch {state.epoch}: perplexity {row['perplexity']:.3f}, {row['tokens_per_s']:,.0f} tokens/s")
                for sample in state.samples[-len(params.prefixes) :]:
                    log(f"  {sample['text']}")
            if checkpoint is not None and (state.epoch % params.checkpoint_every == 0 or state.epoch == epochs):
                save_checkpoint(checkpoint, model, optimizer, state)
            progress.advance(f"perplexity {row['perplexity']:.3f}")
    finally:
        progress.close()
    return model, optimizer, state


@torch.no_grad()
def evaluate(model: nn.Module, indices: np.ndarray, steps: int, max_streams: int, device: torch.device) -> float:
    """Perplexity on held-out indices: read as parallel streams with the state carried, every position scored."""
    streams = max(1, min(max_streams, (len(indices) - 1) // (8 * steps)))
    length = (len(indices) - 1) // streams
    x = torch.from_numpy(np.asarray(indices[: streams * length], dtype=np.int64)).view(streams, length)
    y = torch.from_numpy(np.asarray(indices[1 : streams * length + 1], dtype=np.int64)).view(streams, length)
    was_training = model.training
    model.eval()
    state = model.init_state(streams, device)
    total = torch.zeros((), device=device)
    for start in range(0, length, steps):
        xs, ys = x[:, start : start + steps].to(device), y[:, start : start + steps].to(device)  # (streams, <=steps)
        logits, state = model(xs, state)  # (streams, <=steps, vocab)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ys.reshape(-1), reduction="sum")
    model.train(was_training)
    return math.exp(min(total.item() / (streams * length), 700.0))


def hidden_rows(hidden: torch.Tensor | tuple[torch.Tensor, ...]) -> int:
    first = hidden[0] if isinstance(hidden, tuple) else hidden
    return first.shape[-2] if first.dim() == 3 else first.shape[0]


def clip_by_global_norm(weights: list[torch.Tensor], clip: float | None) -> torch.Tensor:
    """g <- g * min(1, clip / ||g||) over all parameters together; returns ||g|| before clipping, on the device."""
    grads = [w.grad for w in weights if w.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if clip is not None:
        scale = torch.clamp(clip / (norm + 1e-6), max=1.0)
        torch._foreach_mul_(grads, scale)
    return norm

"""The training step: forward, loss, backward, clipping and the optimizer update for one batch.

On CUDA the whole step for the full batch shape is captured once as a CUDA graph and replayed: a step of the
book's model is hundreds of small kernels, and launching them one by one from Python costs more than running
them. The graph runs the very kernels of the eager step on the same buffers, so the numbers are the same; any
other shape (a partial last batch) and the CPU take the eager step.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from tasks.train.model import CharModel, State, detach, hidden_rows
from tasks.train.params import TrainParams
from tasks.train.schedule import Schedule

# Eager steps of the full shape before the capture: cuBLAS, cuDNN and the optimizer's state are created
# lazily on first use, and none of that may happen inside a capture (PyTorch's recipe warms up 3).
WARMUP_STEPS = 3


def clip_by_global_norm(weights: Sequence[torch.Tensor], clip: float | None) -> torch.Tensor:
    """g <- g * min(1, clip / ||g||) over all parameters together; returns ||g|| before clipping, on the device."""
    grads = [w.grad for w in weights if w.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))  # one kernel on CUDA
    if clip is not None:
        scale = torch.clamp(clip / (norm + 1e-6), max=1.0)
        torch._foreach_mul_(grads, scale)
    return norm


def autocast(device: torch.device, precision: str):
    """bf16 autocast for the forward and the loss; fp32 runs as written. No weight cache: a graph must not
    capture a cast that only happens on the first step."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)


def copy_state(target: State, source: State) -> None:
    for t, s in zip(*((target, source) if isinstance(target, tuple) else ((target,), (source,))), strict=True):
        t.copy_(s)


def zero_state(state: State) -> None:
    for s in state if isinstance(state, tuple) else (state,):
        s.zero_()


class TrainStep:
    """Steps over an epoch's batches, adding the token loss and gradient norm up on the device.

    `carry_state`: the consecutive sampler's hidden state carried (detached) from batch to batch, from zero at
    each epoch's start; otherwise every batch starts from zero. `schedule`: the learning rate of each step, counted
    from `steps` (None: the optimizer's own, constant).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        params: TrainParams,
        carry_state: bool,
        schedule: Schedule | None = None,
        steps: int = 0,
    ):
        self.model, self.optimizer, self.params, self.carry_state = model, optimizer, params, carry_state
        self.schedule = None if schedule is None or schedule.constant else schedule
        self.steps = steps  # optimizer steps taken in the whole run: the schedule's clock
        self.epoch = 0  # 0-based, set by the loop: the step schedule's clock
        # Under DDP, the wrapped model: it makes the states.
        self.core = cast("CharModel", getattr(model, "module", model))
        self.device = torch.device(params.device)
        self.weights = list(model.parameters())
        self.loss_sum = torch.zeros((), device=self.device)
        self.norm_sum = torch.zeros((), device=self.device)
        self.hidden: State | None = None
        # DDP's gradient exchange runs between the backward's kernels: those steps stay eager. So does a changing
        # learning rate: a captured step bakes its Python-float lr into the graph, and SGD reads a tensor lr with
        # .item() outside torch.compile (a host sync, not capturable); the eager step gives the graph's numbers.
        self.use_graph = (
            self.device.type == "cuda" and params.cuda_graph and self.core is model and self.schedule is None
        )
        self.warmup = WARMUP_STEPS
        self.graph: torch.cuda.CUDAGraph | None = None
        self.shape: tuple[int, ...] | None = None  # the shape the graph was captured for
        self.stream = torch.cuda.Stream(self.device) if self.use_graph else None

    def start_epoch(self) -> None:
        self.loss_sum.zero_()
        self.norm_sum.zero_()
        self.hidden = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One batch: x and y are (batch, num_steps) indices, on any device."""
        if self.schedule is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = self.schedule.lr_at(self.steps, self.epoch)
        self.steps += 1
        carried = self._carried(x.shape[0])
        if self.graph is not None and tuple(x.shape) == self.shape:
            self.replay(x, y, carried)
            return
        x = x.to(self.device, non_blocking=True)  # (batch, num_steps)
        y = y.to(self.device, non_blocking=True).long()  # (batch, num_steps)
        hidden = self.core.init_state(x.shape[0], self.device) if carried is None else detach(carried)
        if not self.use_graph or (self.shape is not None and tuple(x.shape) != self.shape):
            self.hidden = self.eager(x, y, hidden)
            return
        # The first full-shape batches warm up on the capture's stream, then the graph is captured.
        self.shape = tuple(x.shape)
        assert self.stream is not None  # made with use_graph
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream), warnings.catch_warnings():
            # A capturable optimizer warns when stepped uncaptured, as these few steps are by design.
            warnings.filterwarnings("ignore", "This instance was constructed with capturable=True")
            self.hidden = self.eager(x, y, hidden)
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        self.warmup -= 1
        if self.warmup == 0:
            self.capture(x.shape[0])

    def _carried(self, rows: int) -> State | None:
        """The state the last batch left, where this batch of `rows` goes on from it; None: start from zero."""
        if self.hidden is None or not self.carry_state or hidden_rows(self.hidden) != rows:
            return None
        return self.hidden

    def eager(self, x: torch.Tensor, y: torch.Tensor, hidden: State) -> State:
        with autocast(self.device, self.params.precision):
            logits, hidden = self.model(x, hidden)  # (batch, num_steps, vocab)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))  # fp32 under autocast
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.norm_sum += clip_by_global_norm(self.weights, self.params.clip)
        self.optimizer.step()
        self.loss_sum += loss.detach() * y.numel()
        return hidden

    def capture(self, batch: int) -> None:
        """Record the whole step on static buffers: x, y and the hidden state in, the state written back."""
        assert self.shape is not None  # set by the warm-up steps
        self.static_x = torch.zeros(self.shape, dtype=torch.long, device=self.device)  # (batch, num_steps)
        self.static_y = torch.zeros(self.shape, dtype=torch.long, device=self.device)  # (batch, num_steps)
        self.static_hidden = self.core.init_state(batch, device=self.device)
        if self.hidden is not None:
            copy_state(self.static_hidden, detach(self.hidden))
        # The graph owns the gradients it allocates: none may exist before it.
        self.optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, stream=self.stream):
            hidden = self.eager(self.static_x, self.static_y, self.static_hidden)
            copy_state(self.static_hidden, detach(hidden))
        self.hidden = self.static_hidden

    def replay(self, x: torch.Tensor, y: torch.Tensor, carried: State | None) -> None:
        assert self.graph is not None  # captured
        self.static_x.copy_(x, non_blocking=True)
        self.static_y.copy_(y, non_blocking=True)
        if carried is None:
            zero_state(self.static_hidden)
        elif carried is not self.static_hidden:
            copy_state(self.static_hidden, detach(carried))
        self.graph.replay()
        self.hidden = self.static_hidden

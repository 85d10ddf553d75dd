"""Scoring a model on held-out indices: the summed negative log-likelihood of every next character.

Validation during training and `charflow evaluate` both call `score`, so the two can never disagree on what a
perplexity is. Recurrent models read the text as parallel streams with their state carried, every position
scored once. The Transformer reads windows of num_steps at a stride of half that: the first window scores all
its positions, every later one only its last `stride` (so each has at least num_steps/2 characters of context
but the first window's), every target once.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from tasks.train.model import CharModel, evaluating
from tasks.train.transformer import Transformer

# Past 700 nats exp() overflows: a run there has diverged as surely as with a NaN.
MAX_LOSS = 700.0


class Score(NamedTuple):
    """Nats summed over `tokens` predictions."""

    nll: float
    tokens: int

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.nll / self.tokens, MAX_LOSS))

    @property
    def bits_per_char(self) -> float:
        return self.nll / self.tokens / math.log(2)


def streams_for(length: int, num_steps: int, streams: int) -> int:
    """At most `streams`, and few enough that each reads at least 8 windows of `num_steps`."""
    return max(1, min(streams, (length - 1) // (8 * num_steps)))


@torch.no_grad()
def score(model: CharModel, indices: np.ndarray, *, num_steps: int, streams: int, device: torch.device) -> Score:
    """Every index after the first predicted from those before it, in windows of `num_steps`; `streams` at once."""
    if isinstance(model, Transformer):
        return score_windows(model, indices, num_steps=num_steps, batch=streams, device=device)
    streams = streams_for(len(indices), num_steps, streams)
    length = (len(indices) - 1) // streams
    data = np.asarray(indices, dtype=np.int64)
    x = torch.from_numpy(data[: streams * length]).view(streams, length)  # (streams, length)
    y = torch.from_numpy(data[1 : streams * length + 1]).view(streams, length)  # (streams, length)
    state = model.init_state(streams, device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    with evaluating(model):
        for start in range(0, length, num_steps):
            xs, ys = x[:, start : start + num_steps].to(device), y[:, start : start + num_steps].to(device)
            logits, state = model(xs, state)  # (streams, <=num_steps, vocab)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ys.reshape(-1), reduction="sum").double()
    return Score(total.item(), streams * length)


def window_plan(targets: int, num_steps: int) -> list[tuple[int, int]]:
    """(start, first scored position) of each window over `targets` next-character predictions: target j is
    indices[j + 1], predicted from indices[: j + 1]. All windows but a shorter text's one are num_steps long;
    after the first, each scores at most its last `stride` positions, the last window ending at the last target."""
    if targets <= num_steps:
        return [(0, 0)]
    stride = max(1, num_steps // 2)
    plan, scored = [(0, 0)], num_steps  # targets scored so far
    while scored < targets:
        end = min(scored + stride, targets)
        plan.append((end - num_steps, scored - (end - num_steps)))
        scored = end
    return plan


@torch.no_grad()
def score_windows(model: CharModel, indices: np.ndarray, *, num_steps: int, batch: int, device: torch.device) -> Score:
    """The Transformer's rule (`window_plan`), `batch` windows a forward."""
    data = torch.from_numpy(np.asarray(indices, dtype=np.int64))  # (n,)
    targets = len(data) - 1
    length = min(num_steps, targets)
    plan = window_plan(targets, num_steps)
    total = torch.zeros((), dtype=torch.float64, device=device)
    with evaluating(model):
        for first in range(0, len(plan), max(1, batch)):
            chunk = plan[first : first + max(1, batch)]
            starts = torch.tensor([start for start, _ in chunk])  # (windows,)
            rows = starts[:, None] + torch.arange(length + 1)  # (windows, length + 1)
            both = data[rows].to(device)  # (windows, length + 1)
            logits, _ = model(both[:, :-1], model.init_state(len(chunk), device))  # (windows, length, vocab)
            losses = F.cross_entropy(logits.transpose(1, 2), both[:, 1:], reduction="none")  # (windows, length)
            first_scored = torch.tensor([s for _, s in chunk], device=device)[:, None]  # (windows, 1)
            scored = torch.arange(length, device=device) >= first_scored  # (windows, length)
            total += losses.double()[scored].sum()
    return Score(total.item(), targets)

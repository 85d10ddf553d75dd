"""Scoring a model on held-out indices: the summed negative log-likelihood of every next character.

Validation during training and `charflow evaluate` both call `score`, so the two can never disagree on what a
perplexity is. Recurrent models read the text as parallel streams with their state carried, every position
scored once.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from tasks.train.model import CharModel

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
    streams = streams_for(len(indices), num_steps, streams)
    length = (len(indices) - 1) // streams
    data = np.asarray(indices, dtype=np.int64)
    x = torch.from_numpy(data[: streams * length]).view(streams, length)  # (streams, length)
    y = torch.from_numpy(data[1 : streams * length + 1]).view(streams, length)  # (streams, length)
    was_training = model.training
    model.eval()
    state = model.init_state(streams, device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    for start in range(0, length, num_steps):
        xs, ys = x[:, start : start + num_steps].to(device), y[:, start : start + num_steps].to(device)
        logits, state = model(xs, state)  # (streams, <=num_steps, vocab)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ys.reshape(-1), reduction="sum").double()
    model.train(was_training)
    return Score(total.item(), streams * length)

"""The gate's scoring: every next index of a stream scored, one value a position (validation's `score` sums, and
leaves a remainder of positions unscored when the text does not split evenly into its streams; the gate must
score every character). Recurrent models read `gate_streams` parallel streams with their state carried; the
Transformer reads validation's windows (`tasks.train.scoring.window_plan`)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from tasks.train.model import CharModel, evaluating
from tasks.train.scoring import window_plan
from tasks.train.transformer import Transformer

# A recurrent model reads the text as parallel streams, each from a zero state: one per this many characters,
# so that few characters are read with little context, at most MAX_STREAMS at once.
STREAM_CHARS = 4096
MAX_STREAMS = 16


def gate_streams(targets: int) -> int:
    return max(1, min(MAX_STREAMS, targets // STREAM_CHARS))


@torch.no_grad()
def row_bits(model: CharModel, stream: np.ndarray, *, num_steps: int, device: torch.device) -> np.ndarray:
    """-log2 p(stream[r + 1] | stream[: r + 1]) for every r, (m - 1,) float64."""
    targets = len(stream) - 1
    if targets < 1:
        return np.zeros(0, dtype=np.float64)
    data = torch.from_numpy(np.asarray(stream, dtype=np.int64))  # (m,)
    nats = (
        _windows(model, data, num_steps, device)
        if isinstance(model, Transformer)
        else _streams(model, data, num_steps, device)
    )
    return nats.numpy() / math.log(2)


def _streams(model: CharModel, data: torch.Tensor, num_steps: int, device: torch.device) -> torch.Tensor:
    """Every position in `gate_streams` rows of equal length, the last row padded (its padding follows every
    real position, so it changes none of their predictions) and cut off after."""
    targets = len(data) - 1
    streams = gate_streams(targets)
    length = -(-targets // streams)  # ceil
    x = torch.zeros(streams * length, dtype=torch.long)
    y = torch.zeros(streams * length, dtype=torch.long)
    x[:targets], y[:targets] = data[:-1], data[1:]
    x, y = x.view(streams, length), y.view(streams, length)  # (streams, length) each
    out = torch.zeros(streams, length, dtype=torch.float64)
    state = model.init_state(streams, device)
    with evaluating(model):
        for start in range(0, length, num_steps):
            xs, ys = x[:, start : start + num_steps].to(device), y[:, start : start + num_steps].to(device)
            logits, state = model(xs, state)  # (streams, <=num_steps, vocab)
            losses = F.cross_entropy(logits.transpose(1, 2), ys, reduction="none")  # (streams, <=num_steps)
            out[:, start : start + num_steps] = losses.double().cpu()
    return out.reshape(-1)[:targets]  # (targets,)


def _windows(model: Transformer, data: torch.Tensor, num_steps: int, device: torch.device) -> torch.Tensor:
    """Validation's windows: every target scored once, with at least num_steps/2 characters of context but in
    the first window."""
    targets = len(data) - 1
    length = min(num_steps, targets)
    out = torch.zeros(targets, dtype=torch.float64)
    with evaluating(model):
        for start, first_scored in window_plan(targets, num_steps):
            window = data[start : start + length + 1].to(device)[None]  # (1, length + 1)
            logits, _ = model(window[:, :-1], model.init_state(1, device))  # (1, length, vocab)
            losses = F.cross_entropy(logits.transpose(1, 2), window[:, 1:], reduction="none")[0]  # (length,)
            out[start + first_scored : start + length] = losses[first_scored:].double().cpu()
    return out

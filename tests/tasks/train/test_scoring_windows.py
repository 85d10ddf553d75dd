"""The Transformer's scoring rule: windows of num_steps at a stride of half that, every target scored once, the
first window's all, each later one's last `stride` positions; batched."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tasks.train.loop import Validation, evaluate
from tasks.train.model import build_model
from tasks.train.params import ModelParams
from tasks.train.scoring import score, score_windows, window_plan
from tasks.train.transformer import Transformer

CPU = torch.device("cpu")


def scored_targets(plan, targets, num_steps):
    """Each target's (count, position in its window) under `plan`."""
    length = min(num_steps, targets)
    counts, positions = [0] * targets, [None] * targets
    for start, first in plan:
        for position in range(first, length):
            counts[start + position] += 1
            positions[start + position] = position
    return counts, positions


@pytest.mark.parametrize(("targets", "num_steps"), [(10, 4), (11, 4), (4, 4), (3, 4), (35, 35), (100, 35), (9, 1)])
def test_every_target_is_scored_once_with_half_a_window_of_context(targets, num_steps):
    plan = window_plan(targets, num_steps)
    counts, positions = scored_targets(plan, targets, num_steps)
    assert counts == [1] * targets
    assert all(start >= 0 and start + min(num_steps, targets) <= targets for start, _ in plan)
    # Past the first window, every target is predicted from at least num_steps/2 characters before it.
    assert all(position + 1 >= num_steps // 2 for position in positions[num_steps:])


def test_the_plan_by_hand():
    assert window_plan(10, 4) == [(0, 0), (2, 2), (4, 2), (6, 2)]  # targets 0-3, 4-5, 6-7, 8-9
    assert window_plan(11, 4) == [(0, 0), (2, 2), (4, 2), (6, 2), (7, 3)]  # the tail: target 10 alone
    assert window_plan(3, 4) == [(0, 0)]  # a text shorter than a window: one window, all of it


class PositionSure(Transformer):
    """Predicts each id + 1 (mod 2) with a logit margin equal to its position in the window: at position p the
    loss of a right guess is softplus(-p) = ln(1 + e^-p), a number to check by hand."""

    def __init__(self, context):
        nn.Module.__init__(self)
        self.context, self.batches = context, []

    def forward(self, x, state):
        self.batches.append(x.shape[0])
        margin = torch.arange(x.shape[1], dtype=torch.float32)  # (steps,)
        return F.one_hot((x + 1) % 2, 2).float() * margin[:, None], state  # (batch, steps, 2)


def softplus_minus(p):
    return math.log1p(math.exp(-p))


def test_the_nats_summed_by_hand():
    """11 indices, 10 targets, windows of 4: positions 0-3 scored once, then 2 and 3 in three more windows."""
    model = PositionSure(4)
    result = score(model, np.arange(11) % 2, num_steps=4, streams=3, device=CPU)
    expected = sum(map(softplus_minus, [0, 1, 2, 3])) + 3 * (softplus_minus(2) + softplus_minus(3))
    assert result.tokens == 10
    assert result.nll == pytest.approx(expected, rel=1e-6)
    assert model.batches == [3, 1]  # four windows, three a forward


def test_batched_windows_give_the_one_at_a_time_sum_on_a_real_model():
    torch.manual_seed(0)
    model = build_model(12, ModelParams(model="transformer", hidden=16, layers=2), context=6)
    indices = np.random.default_rng(0).integers(0, 12, 97)
    batched = score_windows(model, indices, num_steps=6, batch=5, device=CPU)
    single = score_windows(model, indices, num_steps=6, batch=1, device=CPU)
    assert batched.tokens == single.tokens == 96
    assert batched.nll == pytest.approx(single.nll, rel=1e-6)
    # The naive loop: each target's loss from its own window, as the plan assigns it.
    with torch.no_grad():
        logits = {
            start: model(torch.from_numpy(indices[start : start + 6])[None], None)[0][0]
            for start, _ in window_plan(96, 6)
        }
    naive = 0.0
    for start, first in window_plan(96, 6):
        for position in range(first, 6):
            naive -= F.log_softmax(logits[start][position], -1)[indices[start + position + 1]].item()
    assert batched.nll == pytest.approx(naive, rel=1e-6)
    assert model.training  # left as it was found


def test_validation_of_an_untrained_transformer():
    torch.manual_seed(0)
    model = build_model(12, ModelParams(model="transformer", hidden=8, heads=2), context=5)
    held_out = np.random.default_rng(0).integers(0, 12, 500)
    assert 6 < evaluate(model, Validation(held_out, num_steps=5, streams=4), CPU) < 24

"""Greedy generation: the prefix comes back first, then the model's argmax, the same every time."""

import numpy as np
import pytest
import torch

from tasks.encode import EncodeError
from tasks.train.generate import continue_text, predict
from tasks.train.model import build_model
from tasks.train.params import ModelParams
from tasks.vocab import Vocab

VOCAB = Vocab(tokens=list("abcdef"), counts=np.ones(6, dtype=np.int64), reserved=0)


class Next(torch.nn.Module):
    """Always predicts the id after the one it is given: a model whose greedy output is known."""

    def init_state(self, batch, device):
        return torch.zeros(batch, 1)

    def forward(self, x, state):
        return torch.nn.functional.one_hot((x + 1) % 6, 6).float(), state + 1  # (batch, steps, vocab)


def test_predict_feeds_the_prefix_then_each_argmax():
    assert predict(Next(), [0, 3], 4, torch.device("cpu")) == [0, 3, 4, 5, 0, 1]
    assert continue_text(Next(), VOCAB, "ad", 4, torch.device("cpu")) == "adefab"


def test_a_real_model_is_deterministic_and_keeps_the_prefix():
    torch.manual_seed(0)
    model = build_model(6, ModelParams(model="gru", hidden=8)).eval()
    text = continue_text(model, VOCAB, "cab", 10, torch.device("cpu"))
    assert text.startswith("cab")
    assert len(text) == 13
    assert set(text) <= set("abcdef")
    assert continue_text(model, VOCAB, "cab", 10, torch.device("cpu")) == text


def test_a_prefix_with_unseen_characters_is_refused_by_name():
    with pytest.raises(EncodeError, match="the prefix 'a☃' has characters this model never saw"):
        continue_text(Next(), VOCAB, "a☃", 3, torch.device("cpu"))

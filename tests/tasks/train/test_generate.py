"""Generation: greedy (the book's, the prefix first, then each argmax) and sampled (temperature, top-k, top-p),
seeded; recurrent models fed one character at a time, the Transformer its sliding window."""

import math

import numpy as np
import pytest
import torch

from tasks.encode import EncodeError
from tasks.train.generate import continue_text, predict, sample, sample_texts
from tasks.train.model import build_model
from tasks.train.params import ModelParams
from tasks.vocab import Vocab

CPU = torch.device("cpu")
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


def book_predict(model, prefix, chars, device):
    """The book's greedy prediction as charflow had it before sampling: the reference temperature 0 must equal."""
    state = model.init_state(1, device)
    out = [prefix[0]]
    with torch.no_grad():
        for t in range(len(prefix) + chars - 1):
            logits, state = model(torch.tensor([[out[-1]]], device=device), state)  # (1, 1, vocab)
            out.append(prefix[t + 1] if t + 1 < len(prefix) else int(logits[0, -1].argmax()))
    return out


def seeded(name, vocab=6, **params):
    torch.manual_seed(0)
    return build_model(vocab, ModelParams(model=name, hidden=8, **params), context=4).eval()


@pytest.mark.parametrize("name", ["scratch", "rnn", "gru", "lstm"])
def test_temperature_0_is_the_books_greedy_prediction(name):
    model = seeded(name, vocab=6)
    with torch.no_grad():  # a model that does not just repeat itself: a sharper output layer
        for p in model.parameters():
            p.mul_(30)
    for prefix in ([2], [0, 3, 1]):
        book = book_predict(model, prefix, 20, CPU)
        assert predict(model, prefix, 20, CPU) == book
        assert sample(model, prefix, 20, CPU, temperature=0.0, seed=7) == [book]
        assert sample(model, prefix, 20, CPU, num_samples=3) == [book] * 3
    assert len(set(book)) > 1


@pytest.mark.parametrize("name", ["gru", "transformer"])
def test_the_same_seed_gives_the_same_text_and_another_seed_another(name):
    model = seeded(name)
    draw = {"temperature": 1.0, "num_samples": 2}
    first = sample(model, [1, 2], 30, CPU, seed=1, **draw)
    assert sample(model, [1, 2], 30, CPU, seed=1, **draw) == first
    assert sample(model, [1, 2], 30, CPU, seed=2, **draw) != first
    assert first[0] != first[1]  # the samples drawn together are drawn apart
    assert all(row[:2] == [1, 2] and len(row) == 32 for row in first)


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_top_k_1_and_a_tiny_top_p_are_greedy_at_any_temperature(name):
    model = seeded(name)
    greedy = sample(model, [3], 25, CPU)
    for temperature in (0.5, 1.0, 5.0):
        assert sample(model, [3], 25, CPU, temperature=temperature, top_k=1, seed=4) == greedy
        assert sample(model, [3], 25, CPU, temperature=temperature, top_p=1e-6, seed=4) == greedy


LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])


class Fixed(torch.nn.Module):
    """The same next-character logits whatever it is fed: a model whose distribution is known."""

    def init_state(self, batch, device):
        return torch.zeros(batch, 1)

    def forward(self, x, state):
        return LOGITS.expand(*x.shape, 6), state  # (batch, steps, vocab)


@pytest.mark.parametrize(
    ("draw", "expected"),
    [
        ({"temperature": 1.0}, torch.softmax(LOGITS, 0)),
        ({"temperature": 0.7}, torch.softmax(LOGITS / 0.7, 0)),
        ({"temperature": 2.0}, torch.softmax(LOGITS / 2.0, 0)),
        # The two most likely, renormalised.
        ({"temperature": 1.0, "top_k": 2}, torch.softmax(torch.tensor([2.0, 1.0, *[-math.inf] * 4]), 0)),
        # softmax(LOGITS): 0.574, 0.211, 0.128, ...: 0.574 + 0.211 < 0.8 <= + 0.128, so the three most likely.
        ({"temperature": 1.0, "top_p": 0.8}, torch.softmax(torch.tensor([2.0, 1.0, 0.5, *[-math.inf] * 3]), 0)),
    ],
)
def test_drawn_frequencies_are_the_softmax_of_the_tempered_logits(draw, expected):
    """20,000 draws at once; each frequency within 4.5 binomial standard deviations of its probability (seeded:
    the same draws every run, so it cannot flake)."""
    n = 20_000
    rows = sample(Fixed(), [0], 1, CPU, num_samples=n, seed=0, **draw)
    counts = np.bincount([row[1] for row in rows], minlength=6)
    for count, p in zip(counts, expected.tolist(), strict=True):
        assert abs(count / n - p) <= 4.5 * math.sqrt(p * (1 - p) / n), (count / n, p)


def test_the_transformer_slides_its_context_over_a_longer_text():
    model = seeded("transformer")  # context 4
    fed = []
    model.register_forward_pre_hook(lambda module, args: fed.append(args[0].clone()))
    [out] = sample(model, [1, 2], 10, CPU, temperature=1.0, seed=3)
    assert len(out) == 12
    assert [x.shape[1] for x in fed] == [2, 3] + [4] * 8  # the prefix, then never more than the context
    for step, x in enumerate(fed):
        length = 2 + step  # characters known before this step's draw
        assert x[0].tolist() == out[max(0, length - 4) : length]  # the last `context` of them


def test_a_recurrent_model_is_fed_one_character_at_a_time():
    model = seeded("gru")
    fed = []
    model.register_forward_pre_hook(lambda module, args: fed.append(tuple(args[0].shape)))
    sample(model, [1, 2, 3], 5, CPU, temperature=1.0, num_samples=4)
    assert fed == [(4, 1)] * 7  # 3 + 5 - 1 steps, the samples a batch


def test_generation_leaves_the_model_in_its_mode_and_refuses_an_empty_prefix():
    model = seeded("transformer", dropout=0.5).train()
    assert sample(model, [1], 5, CPU) == sample(model, [1], 5, CPU)  # no dropout while generating
    assert model.training
    with pytest.raises(ValueError, match="a prefix must have at least one character"):
        sample(model, [], 5, CPU)


def test_sample_texts_decodes_each_sample():
    texts = sample_texts(Next(), VOCAB, "ab", 3, CPU, temperature=1.0, top_k=1, num_samples=2)
    assert texts == ["abcde", "abcde"]

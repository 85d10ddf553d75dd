"""The models: the seed notebook's claims checked on our ScratchRNN, the book's loss, every model's shapes."""

import pytest
import torch
import torch.nn.functional as F

from tasks.train.model import BOOK_SCRATCH_PARAMETERS, ScratchRNN, build_model, detach, hidden_rows, output_logits
from tasks.train.params import ModelParams

V, H = 1_027, 256


def test_a_step_of_our_rnn_is_both_forms_of_the_books_equation():
    """The notebook: X W_xh + H W_hh equals [X, H] [W_xh; W_hh]; our lookup-based step must equal both."""
    torch.manual_seed(0)
    model = ScratchRNN(V, H)
    with torch.no_grad():
        model.b_h.copy_(torch.randn(H) * 0.1)
    x = torch.randint(0, V, (4, 1))  # (batch, 1 step)
    h_prev = torch.randn(4, H)
    _, ours = model(x, h_prev)  # (batch, hidden)
    one_hot = F.one_hot(x[:, 0], V).float()  # (batch, vocab)
    separate = torch.tanh(one_hot @ model.W_xh + h_prev @ model.W_hh + model.b_h)
    stacked = torch.tanh(torch.cat([one_hot, h_prev], dim=1) @ torch.cat([model.W_xh, model.W_hh], dim=0) + model.b_h)
    assert torch.allclose(ours, separate, atol=1e-6)
    assert torch.allclose(ours, stacked, atol=1e-6)


@pytest.mark.parametrize("num_steps", [1, 5, 35, 100])
def test_parameter_count_does_not_depend_on_num_steps(num_steps):
    model = build_model(V, ModelParams())
    assert sum(p.numel() for p in model.parameters()) == BOOK_SCRATCH_PARAMETERS == 592_643
    logits, state = model(torch.randint(0, V, (2, num_steps)), model.init_state(2, torch.device("cpu")))
    assert logits.shape == (2, num_steps, V)
    assert state.shape == (2, H)


def test_our_loss_is_the_books_loss():
    """The book: one-hot inputs, a list of per-step outputs, time-major concatenation, mean cross-entropy."""
    torch.manual_seed(1)
    model = ScratchRNN(V, H)
    x, y = torch.randint(0, V, (32, 35)), torch.randint(0, V, (32, 35))
    state = model.init_state(32, torch.device("cpu"))
    logits, _ = model(x, state)
    ours = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
    h, outputs = state, []
    for t in range(35):
        h = torch.tanh(F.one_hot(x[:, t], V).float() @ model.W_xh + h @ model.W_hh + model.b_h)
        outputs.append(h @ model.W_hq + model.b_q)
    book = F.cross_entropy(torch.cat(outputs, dim=0), torch.transpose(y, 0, 1).reshape(-1))
    assert torch.allclose(ours, book, rtol=1e-5)


@pytest.mark.parametrize(
    ("name", "layers", "state_shape"),
    [
        ("scratch", 1, (3, 16)),
        ("rnn", 2, (2, 3, 16)),
        ("gru", 1, (1, 3, 16)),
        ("lstm", 2, (2, 3, 16)),
        ("transformer", 2, (3, 0)),  # nothing carried: an empty state
    ],
)
def test_every_model_maps_ids_to_logits_and_a_state(name, layers, state_shape):
    model = build_model(50, ModelParams(model=name, hidden=16, layers=layers), context=7)
    state = model.init_state(3, torch.device("cpu"))
    logits, state = model(torch.randint(0, 50, (3, 7), dtype=torch.int32), state)
    assert logits.shape == (3, 7, 50)
    first = state[0] if isinstance(state, tuple) else state
    assert first.shape == state_shape
    assert hidden_rows(state) == 3
    assert isinstance(state, tuple) == (name == "lstm")
    assert all(s.grad_fn is None for s in (detach(state) if isinstance(state, tuple) else (detach(state),)))


@pytest.mark.parametrize("transposed", [False, True])
def test_output_logits_padded_for_aligned_kernels_are_the_plain_product(transposed):
    """The CUDA layout (vocabulary padded to a multiple of 8, then cut), checked here on the CPU."""
    torch.manual_seed(0)
    hs = torch.randn(3, 7, 16, requires_grad=True)  # (batch, num_steps, hidden)
    weight = torch.randn(16, V) if transposed else torch.randn(V, 16)
    bias = torch.randn(V)
    weight.requires_grad_(), bias.requires_grad_()
    plain = output_logits(hs, weight, bias, transposed)
    padded = output_logits(hs, weight, bias, transposed, align=8)
    assert V % 8
    assert plain.shape == padded.shape == (3, 7, V)
    assert torch.allclose(plain, padded, rtol=1e-5, atol=1e-6)
    grads = [torch.autograd.grad(out.square().sum(), (hs, weight, bias)) for out in (plain, padded)]
    for a, b in zip(*grads, strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)

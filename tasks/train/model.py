"""The models: the book's RNN written out, torch.nn recurrent layers (cuDNN on a GPU), and a small Transformer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from tasks.train.params import ModelParams
from tasks.train.transformer import Transformer

BOOK_SCRATCH_PARAMETERS = 592_643  # vocabulary 1,027, hidden 256: V*H + H*H + H + H*V + V

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class ScratchRNN(nn.Module):
    """H_t = tanh(X_t W_xh + H_{t-1} W_hh + b_h), O_t = H_t W_hq + b_q, with weights N(0, 0.01²).

    X_t is one-hot, so X_t W_xh is a row of W_xh: a lookup, the same function without the V-wide product.
    The lookup is F.embedding: plain indexing's backward adds rows in a thread-dependent order on the CPU, so
    the same seed gave different perplexities from run to run.
    The input and output products do not depend on H_{t-1}, so they run once for all steps.
    """

    def __init__(self, vocab_size: int, hidden: int):
        super().__init__()
        self.hidden = hidden

        def weight(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape) * 0.01)

        self.W_xh, self.W_hh, self.b_h = (
            weight(vocab_size, hidden),
            weight(hidden, hidden),
            nn.Parameter(torch.zeros(hidden)),
        )
        self.W_hq, self.b_q = weight(hidden, vocab_size), nn.Parameter(torch.zeros(vocab_size))

    def init_state(self, batch: int, device: torch.device) -> torch.Tensor:
        return torch.zeros(batch, self.hidden, device=device)  # (batch, hidden)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = F.embedding(x, self.W_xh) + self.b_h  # (batch, num_steps, hidden)
        h = state  # (batch, hidden)
        outputs = []
        for inputs_t in inputs.unbind(1):  # one backward for all steps, where inputs[:, t] had one each
            h = torch.tanh(inputs_t + h @ self.W_hh)  # (batch, hidden)
            outputs.append(h)
        hs = torch.stack(outputs, dim=1)  # (batch, num_steps, hidden)
        return output_logits(hs, self.W_hq, self.b_q, transposed=True), h  # (batch, num_steps, vocab), (batch, hidden)


class TorchRNN(nn.Module):
    """Embedding -> nn.RNN / nn.GRU / nn.LSTM -> linear output layer."""

    def __init__(self, vocab_size: int, params: ModelParams):
        super().__init__()
        cell = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[params.model]
        self.layers, self.hidden, self.lstm = params.layers, params.hidden, params.model == "lstm"
        self.embedding = nn.Embedding(vocab_size, params.hidden)
        self.rnn = cell(
            params.hidden,
            params.hidden,
            num_layers=params.layers,
            batch_first=True,
            dropout=params.dropout if params.layers > 1 else 0.0,
        )
        self.output = nn.Linear(params.hidden, vocab_size)

    def init_state(self, batch: int, device: torch.device) -> State:
        h = torch.zeros(self.layers, batch, self.hidden, device=device)  # (layers, batch, hidden)
        return (h, torch.zeros_like(h)) if self.lstm else h

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        hs, state = self.rnn(self.embedding(x), state)  # (batch, num_steps, hidden)
        return output_logits(hs, self.output.weight, self.output.bias), state  # (batch, num_steps, vocab)


def output_logits(
    hs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, transposed: bool = False, align: int | None = None
) -> torch.Tensor:
    """hs @ weightᵀ + bias (hs @ weight + bias when `transposed`): one logit per vocabulary symbol.

    On CUDA the vocabulary is padded to a multiple of 8 for the product and the padding cut off after:
    cuBLAS's fast kernels need rows of 16 bytes' multiples, and 1,027 logits a row are not (profiled on an
    H200 at batch 16,384: the three output products took 31 ms of a 74 ms step in old, unaligned kernels).
    The padded logits are never read: the same function, in other kernels (so other last bits on CUDA).
    """
    vocab = bias.shape[0]
    pad = -vocab % (align or (8 if hs.is_cuda else 1))
    if pad:
        weight = F.pad(weight, (0, pad) if transposed else (0, 0, 0, pad))
        bias = F.pad(bias, (0, pad))
    logits = hs @ weight + bias if transposed else F.linear(hs, weight, bias)  # (batch, num_steps, vocab + pad)
    return logits[..., :vocab] if pad else logits


# The models `build_model` makes: what training, evaluation and generation call `init_state` on.
CharModel = ScratchRNN | TorchRNN | Transformer


def build_model(vocab_size: int, params: ModelParams, context: int | None = None) -> CharModel:
    """`context`: the Transformer's learned positions, the batches' num_steps (the recurrent models ignore it)."""
    if params.model == "scratch":
        return ScratchRNN(vocab_size, params.hidden)
    if params.model == "transformer":
        if context is None or context < 1:
            raise ValueError(
                f"the transformer needs its context (the batches' num_steps) to build, got {context!r}; "
                "pass context=num_steps"
            )
        return Transformer(vocab_size, params, context)
    return TorchRNN(vocab_size, params)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """The model in eval mode (no dropout) inside, in the mode it was in after, an exception or not."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def saved_context(weights: dict[str, torch.Tensor]) -> int | None:
    """A saved Transformer's context, read from its position embedding's rows; None for a recurrent model."""
    position = weights.get("position.weight")
    return None if position is None else position.shape[0]


def detach(state: State) -> State:
    if isinstance(state, tuple):
        h, c = state
        return h.detach(), c.detach()
    return state.detach()


def hidden_rows(state: State) -> int:
    """How many sequences a state holds: (batch, hidden) or (layers, batch, hidden), an LSTM's pair alike, and
    the Transformer's empty (batch, 0)."""
    first = state[0] if isinstance(state, tuple) else state
    return first.shape[-2] if first.dim() == 3 else first.shape[0]

"""Generation: the book's greedy prediction, and sampling with a temperature, top-k and top-p (nucleus), seeded.

A recurrent model is fed one character at a time with its state, as the book does. The Transformer carries no
state: each step it is fed its whole window again, the last `context` characters (a sliding context), and
reads the last position's logits. No key-value cache: a window is at most num_steps characters, and
recomputing it keeps one code path, the training one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from tasks.encode import EncodeError, decode, encode
from tasks.train.model import CharModel, evaluating
from tasks.train.transformer import Transformer
from tasks.vocab import Vocab


def next_ids(
    logits: torch.Tensor,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One next character per row of `logits` (rows, vocab): the argmax at temperature 0; otherwise drawn from
    softmax(logits / T) restricted to the k most likely (ties at the k-th kept) and to the smallest most likely
    set whose probability reaches `top_p`."""
    if temperature == 0:
        return logits.argmax(-1)  # (rows,)
    logits = logits.float() / temperature  # (rows, vocab)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (rows, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)  # (rows, vocab) each
        probs = ordered.softmax(-1)
        # A character is dropped when those more likely than it reach p already: the most likely always stays.
        dropped = probs.cumsum(-1) - probs >= top_p  # (rows, vocab)
        logits = logits.scatter(-1, order, ordered.masked_fill(dropped, float("-inf")))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]  # (rows,)


@torch.no_grad()
def sample(
    model: CharModel,
    prefix: list[int],
    chars: int,
    device: torch.device,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    num_samples: int = 1,
    seed: int = 0,
) -> list[list[int]]:
    """`num_samples` continuations of `prefix` drawn together (one batch row each): len(prefix) + chars indices
    each. The draws take a generator seeded by `seed` on `device`; at temperature 0 none is drawn (greedy)."""
    if not prefix:
        raise ValueError("a prefix must have at least one character")
    generator = torch.Generator(device=device).manual_seed(seed)

    def draw(logits: torch.Tensor) -> torch.Tensor:
        return next_ids(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)

    with evaluating(model):  # no dropout while generating
        if isinstance(model, Transformer):
            out = _windowed(model, prefix, chars, device, num_samples, draw)
        else:
            out = _recurrent(model, prefix, chars, device, num_samples, draw)
    return out.tolist()


Draw = Callable[[torch.Tensor], torch.Tensor]


def _start(prefix: list[int], chars: int, device: torch.device, rows: int) -> torch.Tensor:
    """Every sample's indices, the prefix filled in: (rows, len(prefix) + chars), written in place after (a
    growing concatenation would copy the text at every step)."""
    out = torch.zeros(rows, len(prefix) + chars, dtype=torch.long, device=device)
    out[:, : len(prefix)] = torch.tensor(prefix, device=device)
    return out


def _recurrent(
    model: CharModel, prefix: list[int], chars: int, device: torch.device, rows: int, draw: Draw
) -> torch.Tensor:
    """Feed the prefix from a zero state, one character at a time, then each drawn character back in."""
    state = model.init_state(rows, device)
    out = _start(prefix, chars, device, rows)  # (rows, len(prefix) + chars)
    for t in range(len(prefix) + chars - 1):
        logits, state = model(out[:, t : t + 1], state)  # (rows, 1, vocab)
        if t + 1 >= len(prefix):  # past the prefix: the next character is drawn
            out[:, t + 1] = draw(logits[:, -1])  # (rows,)
    return out


def _windowed(
    model: Transformer, prefix: list[int], chars: int, device: torch.device, rows: int, draw: Draw
) -> torch.Tensor:
    """Feed the last `context` characters each step (the prefix's first), and write the next one drawn."""
    out = _start(prefix, chars, device, rows)  # (rows, len(prefix) + chars)
    state = model.init_state(rows, device)  # (rows, 0): nothing carried
    for length in range(len(prefix), len(prefix) + chars):
        logits, state = model(out[:, max(0, length - model.context) : length], state)  # (rows, <=context, vocab)
        out[:, length] = draw(logits[:, -1])  # (rows,)
    return out


def predict(model: CharModel, prefix: list[int], chars: int, device: torch.device) -> list[int]:
    """The book's greedy prediction: the prefix fed in, then each argmax back in: len(prefix) + chars indices."""
    return sample(model, prefix, chars, device)[0]


def encode_prefix(vocab: Vocab, prefix: str) -> list[int]:
    try:
        return encode(prefix, vocab).tolist()
    except EncodeError as exc:
        raise EncodeError(f"the prefix {prefix!r} has characters this model never saw: {exc}") from None


def continue_text(model: CharModel, vocab: Vocab, prefix: str, chars: int, device: torch.device) -> str:
    """The prefix and `chars` characters after it, greedily; a prefix the vocabulary cannot encode is refused by
    name. The training-time samples, as the book's."""
    return decode(np.asarray(predict(model, encode_prefix(vocab, prefix), chars, device)), vocab)


def sample_texts(
    model: CharModel, vocab: Vocab, prefix: str, chars: int, device: torch.device, **drawing: Any
) -> list[str]:
    """`num_samples` texts, each the prefix and `chars` characters drawn after it (`drawing`: `sample`'s
    keywords: temperature, top_k, top_p, num_samples, seed)."""
    rows = sample(model, encode_prefix(vocab, prefix), chars, device, **drawing)
    return [decode(np.asarray(row), vocab) for row in rows]

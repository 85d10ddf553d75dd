"""Greedy generation: the book's prediction, a prefix fed in and each most likely next character after it."""

from __future__ import annotations

import numpy as np
import torch

from tasks.encode import EncodeError, decode, encode
from tasks.train.model import CharModel
from tasks.vocab import Vocab


@torch.no_grad()
def predict(model: CharModel, prefix: list[int], chars: int, device: torch.device) -> list[int]:
    """Feed the prefix from a zero state, then each argmax back in: len(prefix) + chars indices."""
    state = model.init_state(1, device)
    out = [prefix[0]]
    for t in range(len(prefix) + chars - 1):
        logits, state = model(torch.tensor([[out[-1]]], device=device), state)  # (1, 1, vocab)
        out.append(prefix[t + 1] if t + 1 < len(prefix) else int(logits[0, -1].argmax()))
    return out


def continue_text(model: CharModel, vocab: Vocab, prefix: str, chars: int, device: torch.device) -> str:
    """The prefix and `chars` characters after it; a prefix the vocabulary cannot encode is refused by name."""
    try:
        ids = encode(prefix, vocab).tolist()
    except EncodeError as exc:
        raise EncodeError(f"the prefix {prefix!r} has characters this model never saw: {exc}") from None
    return decode(np.asarray(predict(model, ids, chars, device)), vocab)

"""Loading a trained model from its artifact (no pickle) and continuing a prefix with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from artifacts.manifest import read_manifest
from artifacts.store import Store
from tasks.encode import EncodeError, decode, encode
from tasks.model import build_model, predict
from tasks.stages import WEIGHTS_FILE, VocabMismatch, load_vocab
from tasks.train import TrainParams
from tasks.vocab import Vocab


def load_model(store: Store, ref: str, vocab_key: str | None = None) -> tuple[nn.Module, Vocab, torch.device]:
    """The model of a train artifact with its own vocabulary; another expected vocabulary is refused."""
    model_ref = store.find("train", ref)
    own = model_ref.summary["vocab_key"]
    if vocab_key is not None and vocab_key != own:
        raise VocabMismatch(
            f"model {model_ref.key[:12]} was trained with vocabulary {own[:12]}, not {vocab_key[:12]}; "
            "use a model trained on this vocabulary"
        )
    vocab = load_vocab(store.find("vocab", own))
    params = TrainParams.model_validate({**read_manifest(Path(model_ref.path)).params, "device": "auto"})
    device = torch.device(params.device)
    model = build_model(len(vocab), params)
    weights = torch.load(Path(model_ref.path) / WEIGHTS_FILE, map_location=device, weights_only=True)
    model.load_state_dict(weights)
    return model.to(device).eval(), vocab, device


def generate(store: Store, ref: str, prefix: str, chars: int, vocab_key: str | None = None) -> str:
    model, vocab, device = load_model(store, ref, vocab_key)
    try:
        ids = encode(prefix, vocab).tolist()
    except EncodeError as exc:
        raise EncodeError(f"the prefix {prefix!r} has characters this model never saw: {exc}") from None
    return decode(np.asarray(predict(model, ids, chars, device)), vocab)

"""Training parameters, with the book's scratch-RNN settings as defaults, and the device they run on."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.errors import ParameterError
from tasks.vocab import Vocab

BOOK_PREFIXES = ("分开", "不分开")


class ModelParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Literal["scratch", "rnn", "gru", "lstm"] = Field(
        "scratch", description="scratch is the book's RNN written out; the others are torch.nn layers"
    )
    hidden: int = Field(default=256, gt=0, description="hidden units")
    layers: int = Field(default=1, gt=0, description="recurrent layers")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="dropout between layers")


class PrefixError(ParameterError):
    """A prediction prefix the vocabulary cannot encode."""


class DeviceUnavailable(ParameterError):
    """CUDA was asked for on a machine without it."""


class TrainParams(ModelParams):
    """SGD at lr 100, clipping at 0.01, samples every 50 epochs: the book's scratch RNN."""

    optimizer: Literal["sgd", "adam"] = Field("sgd", description="the optimizer")
    lr: float = Field(default=100.0, gt=0, description="learning rate")
    clip: float | None = Field(default=0.01, gt=0, description="global gradient-norm bound, or 'none'")
    seed: int = Field(0, ge=0, description="the sampler's and the model's seed")
    # "auto" is resolved by `resolve_device` before the run is keyed: the device changes the numbers.
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present")
    # bf16 autocast is for large models on a GPU; fp32 reproduces the book.
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16: autocast for large models on a GPU; fp32 reproduces the book"
    )
    # Processes training together (torchrun, DDP): the gradients' sums run in another order, so it is keyed.
    nproc: int = Field(
        default=1, ge=1, description="processes to train on together (torchrun, DDP: gloo on CPU, NCCL on GPUs)"
    )
    # A replayed CUDA graph runs the eager step's kernels: the same numbers, so not part of the key.
    cuda_graph: bool = Field(
        default=True,
        json_schema_extra={"keyed": False},
        description="on CUDA, replay a captured graph of the step instead of stepping eagerly (same numbers)",
    )
    pred_period: int = Field(default=50, gt=0, description="sample every N epochs")
    prefixes: tuple[str, ...] = Field(BOOK_PREFIXES, description="prediction prefix, repeatable")
    pred_chars: int = Field(default=50, ge=0, description="characters to predict after each prefix")
    # How often to save changes no byte of the model: not part of its content key.
    checkpoint_every: int = Field(
        default=10, gt=0, json_schema_extra={"keyed": False}, description="epochs between checkpoints"
    )

    @field_validator("prefixes")
    @classmethod
    def _prefixes_not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not prefix for prefix in value):
            raise ValueError("a prediction prefix must have at least one character")
        return value


class GenerateParams(BaseModel):
    """What `generate` continues and how far: the book's prefix and 50 characters by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefixes: tuple[str, ...] = Field(("分开",), description="prefix to continue, repeatable")
    chars: int = Field(50, description="characters to predict after each prefix")
    vocab: str | None = Field(None, description="refuse the model unless its vocabulary has this key")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_device(params: TrainParams) -> TrainParams:
    """The same parameters with "auto" made concrete; CUDA asked for where there is none is refused."""
    if params.device == "auto":
        return params.model_copy(update={"device": "cuda" if cuda_available() else "cpu"})
    if params.device == "cuda" and not cuda_available():
        raise DeviceUnavailable("device='cuda' but no CUDA device is visible; use --device cpu or auto")
    return params


def check_prefixes(vocab: Vocab, prefixes: tuple[str, ...]) -> None:
    """Refuse, before any training, prefixes that the samples could not be taken from."""
    if vocab.unk is not None:
        return
    known = set(vocab.tokens[vocab.reserved :])
    for prefix in prefixes:
        if missing := sorted(set(prefix) - known):
            shown = ", ".join(map(repr, missing))
            raise PrefixError(
                f"the prediction prefix {prefix!r} has characters the vocabulary lacks ({shown}); "
                "choose --prefix from the corpus's characters"
            )

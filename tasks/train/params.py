"""Training parameters, with the book's scratch-RNN settings as defaults, and the device they run on."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.errors import ParameterError
from tasks.vocab import Vocab

BOOK_PREFIXES = ("分开", "不分开")
# The step schedule's defaults: a tenth of the rate every 50 epochs (a fifth of the book's 250).
STEP_DECAY, STEP_EPOCHS = 0.1, 50


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

    optimizer: Literal["sgd", "adam", "adamw"] = Field("sgd", description="the optimizer")
    lr: float = Field(default=100.0, gt=0, description="learning rate")
    # Past the book: each new setting is keyed only away from its neutral default, the code's old behaviour.
    weight_decay: float = Field(
        default=0.0,
        ge=0,
        json_schema_extra={"keyed_unless": 0.0},
        description="AdamW's decoupled weight decay of the matrices (not biases, norms' scales: 1-D weights)",
    )
    lr_schedule: Literal["constant", "cosine", "step"] = Field(
        "constant",
        json_schema_extra={"keyed_unless": "constant"},
        description="the learning rate over training: cosine decays to lr/10 over all steps, step multiplies "
        "it by --lr-decay every --lr-step-epochs epochs",
    )
    warmup_steps: int = Field(
        default=0,
        ge=0,
        json_schema_extra={"keyed_unless": 0},
        description="optimizer steps of linear warmup from lr/N to lr",
    )
    lr_decay: float = Field(
        default=STEP_DECAY,
        gt=0,
        le=1,
        json_schema_extra={"keyed_unless": STEP_DECAY},
        description="the step schedule's factor",
    )
    lr_step_epochs: int = Field(
        default=STEP_EPOCHS,
        gt=0,
        json_schema_extra={"keyed_unless": STEP_EPOCHS},
        description="the step schedule's period in epochs",
    )
    eval_every: int = Field(
        default=1,
        gt=0,
        json_schema_extra={"keyed_unless": 1},
        description="validate every N epochs (and at the last), with --val-fraction",
    )
    patience: int | None = Field(
        default=None,
        ge=1,
        json_schema_extra={"keyed_unless": None},
        description="stop after N validations without a better validation perplexity (default: train every epoch)",
    )
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

    @property
    def constant_lr(self) -> bool:
        """No schedule and no warmup: the optimizer keeps the rate it was made with (the book's)."""
        return self.lr_schedule == "constant" and not self.warmup_steps

    @model_validator(mode="after")
    def _settings_that_apply(self) -> TrainParams:
        """A setting that would change nothing is refused: it would only change the model's key."""
        if self.weight_decay and self.optimizer != "adamw":
            raise ValueError(f"weight_decay is AdamW's decoupled decay, not {self.optimizer}'s; use --optimizer adamw")
        if self.lr_schedule != "step" and (self.lr_decay, self.lr_step_epochs) != (STEP_DECAY, STEP_EPOCHS):
            raise ValueError("lr_decay and lr_step_epochs set the step schedule; add --lr-schedule step")
        return self


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


class NoValidation(ParameterError):
    """Early stopping or a validation period asked for without a held-out split."""


class WarmupTooLong(ParameterError):
    """A warmup longer than the whole training."""


def check_validation(params: TrainParams, val_fraction: float) -> None:
    """Refuse, before any work, settings that need validation on batches that hold none out."""
    if val_fraction > 0:
        return
    if params.patience is not None:
        raise NoValidation(
            "--patience stops on the validation perplexity, but these batches hold no validation split; "
            "add --val-fraction (0.1, say)"
        )
    if params.eval_every != 1:
        raise NoValidation(
            "--eval-every sets how often to validate, but these batches hold no validation split; "
            "add --val-fraction (0.1, say)"
        )


def check_warmup(params: TrainParams, total_steps: int, bound: str = "") -> None:
    """Refuse a warmup longer than the training's `total_steps` optimizer steps (`bound`: why at most)."""
    if params.warmup_steps > total_steps:
        raise WarmupTooLong(
            f"--warmup-steps {params.warmup_steps} is longer than the whole training ({total_steps} optimizer "
            f"steps{bound}); lower --warmup-steps or train longer"
        )


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

"""Training parameters, with the book's scratch-RNN settings as defaults, and the device they run on."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.errors import ParameterError
from tasks.samplers import SAMPLERS
from tasks.vocab import Vocab

BOOK_PREFIXES = ("分开", "不分开")
# The step schedule's defaults: a tenth of the rate every 50 epochs (a fifth of the book's 250).
STEP_DECAY, STEP_EPOCHS = 0.1, 50
# Generation's bounds: a run of `generate` is interactive, and 64 samples of 100,000 characters is minutes.
MAX_GENERATE_CHARS = 100_000
MAX_SAMPLES = 64


class ModelParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    model: Literal["scratch", "rnn", "gru", "lstm", "transformer"] = Field(
        "scratch",
        description="scratch is the book's RNN written out; rnn, gru and lstm are torch.nn layers; transformer is "
        "a small decoder-only Transformer whose context is --num-steps",
    )
    hidden: int = Field(default=256, gt=0, description="hidden units (the transformer's embedding width)")
    layers: int = Field(default=1, gt=0, description="recurrent layers (the transformer's blocks)")
    dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="dropout between layers (the transformer's: in every block)"
    )
    heads: int = Field(
        default=4,
        gt=0,
        json_schema_extra={"keyed_unless": 4},
        description="the transformer's attention heads: they must divide --hidden",
    )

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> ModelParams:
        if self.model == "transformer" and self.hidden % self.heads:
            raise ValueError(
                f"heads={self.heads} does not divide hidden={self.hidden}; choose --heads among the divisors of "
                "--hidden (or another --hidden)"
            )
        return self


class SamplerMismatch(ParameterError):
    """A model that cannot train on the chosen sampler's batches."""


def check_sampler(model: str, sampler: str) -> None:
    """Refuse, before any work, the transformer on batches whose rows continue each other for a carried state."""
    kind = SAMPLERS.get(sampler)
    if model == "transformer" and kind is not None and kind.carries_state:
        raise SamplerMismatch(
            f"the transformer cannot train on {sampler} batches: they carry a hidden state from batch to batch, "
            "which a Transformer does not have (it sees one window at a time); use --sampler random"
        )


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
    """What `generate` continues, how far and how: the book's prefix, 50 characters, greedy, by default."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    prefixes: tuple[str, ...] = Field(
        ("分开",), description="prefix to continue, repeatable (the default only when no --prefix-file is given)"
    )
    prefix_file: Path | None = Field(
        None, description="a UTF-8 file whose text (less one trailing line break) is one more prefix"
    )
    chars: int = Field(
        50,
        ge=0,
        le=MAX_GENERATE_CHARS,
        description=f"characters to generate after each prefix, at most {MAX_GENERATE_CHARS:,}",
    )
    temperature: float = Field(
        0.0,
        ge=0.0,
        description="0: greedy, the most likely character each time (the book's); above 0 the logits are divided "
        "by it and the next character drawn (below 1 surer, above 1 wilder)",
    )
    top_k: int | None = Field(
        None, ge=1, description="draw among the k most likely characters only (default: all; ignored at temperature 0)"
    )
    top_p: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="draw from the smallest set of most likely characters whose probability reaches p (1: all; "
        "ignored at temperature 0)",
    )
    num_samples: int = Field(
        1, ge=1, le=MAX_SAMPLES, description=f"samples of each prefix, drawn together, at most {MAX_SAMPLES}"
    )
    seed: int = Field(0, ge=0, description="the draws' seed: the same seed gives the same text on the same device")
    vocab: str | None = Field(None, description="refuse the model unless its vocabulary has this key")
    checkpoint: Literal["best", "last"] | None = Field(
        None, description="the weights: best by validation or the last epoch's (default: best where validated)"
    )
    as_json: bool = Field(False, description='print a JSON list of {"prefix", "sample", "text"} (sample: 0, 1, ...)')

    @field_validator("prefixes")
    @classmethod
    def _prefixes_not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not prefix for prefix in value):
            raise ValueError("a prefix must have at least one character; give --prefix some text")
        return value


class PrefixFileError(ParameterError):
    """A --prefix-file that cannot be read as a prefix."""


def generate_prefixes(params: GenerateParams) -> tuple[str, ...]:
    """The prefixes to continue: those given, then the prefix file's text; with a file and no --prefix, the file's
    alone. Read and checked before the model is loaded."""
    if params.prefix_file is None:
        return params.prefixes
    prefixes = params.prefixes if "prefixes" in params.model_fields_set else ()
    try:
        text = params.prefix_file.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, or a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        if isinstance(exc, ValueError) and not isinstance(exc, UnicodeDecodeError):
            reason = "not a path: it holds a NUL character"
        raise PrefixFileError(
            f"cannot read --prefix-file {params.prefix_file} ({reason}); give a UTF-8 text file"
        ) from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise PrefixFileError(f"--prefix-file {params.prefix_file} is empty; a prefix needs at least one character")
    return (*prefixes, text)


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

"""A training job: everything one run needs, as data. The one-process build runs it as it is; under torchrun
every rank reads it back from its JSON and runs the same job on its rows of every batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from tasks.train.params import TrainParams


class HeldOut(BaseModel):
    """Where validation reads from: the encode artifact's indices past the training part."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoded: Path  # the encode artifact's folder
    start: int  # its first held-out index: the batches' train_indices


class TrainJob(BaseModel):
    """One training run: its parameters, the files it reads, the checkpoint it resumes from and where the
    model's files go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    params: TrainParams  # its device resolved
    batches: Path  # the batches artifact's folder
    vocab_key: str  # the vocabulary the batches must be encoded with
    vocab: Path  # that vocabulary artifact's folder
    held_out: HeldOut | None  # None: the batches kept no validation split
    checkpoint: Path
    output: Path  # the model artifact's folder
    metadata: dict[str, str]  # recorded in the model's tables


class TrainResult(BaseModel):
    """What a run reports of the model it wrote, for the artifact's summary."""

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants")

    sampler: str
    vocab_size: int
    epochs: int
    perplexity: float
    val_perplexity: float | None
    samples: list[dict[str, Any]]  # the last epoch's, one per prefix
    best_epoch: int | None = None  # the validation with the lowest perplexity; None without validation
    best_val_perplexity: float | None = None
    stopped_at: int | None = None  # the epoch --patience stopped training at (then `epochs`); None: ran to the end

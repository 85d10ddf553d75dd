"""Evaluation: a trained model's perplexity and bits per character on a text, through the model's vocabulary.

The text's part evaluated is its first `max_chars` characters (all of them by default), then with `split="val"`
the held-out tail of those, cut where the model's batches cut their validation split. Characters the vocabulary
lacks become `<unk>` where it reserves one; otherwise they are refused before any scoring, or dropped and
counted with `skip_unknown`. The scoring is validation's own (`tasks.train.scoring.score`), so the model's own
held-out tail evaluated with its batch size as the streams gives its last validation perplexity exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tasks.allocator import keep_freed_memory
from tasks.batches import split_validation
from tasks.encode import lookup_table
from tasks.errors import CharflowError, ParameterError
from tasks.train.params import DeviceUnavailable
from tasks.vocab import UNK, Vocab, code_points

if TYPE_CHECKING:  # torch is imported by the scoring alone: the parameters and the mapping are read without it
    from tasks.train.model import CharModel
    from tasks.train.scoring import Score

SHOWN = 5  # unknown characters named in a refusal


class EvaluateError(CharflowError, ValueError):
    """A text the model cannot be evaluated on."""


class UnknownCharacters(EvaluateError):
    """Characters the vocabulary lacks, with no `<unk>` to map them to and no `skip_unknown`."""


class NoValidationSplit(ParameterError):
    """`split="val"` asked of a model whose batches kept no held-out tail."""


class EvaluateParams(BaseModel):
    """The whole text, never truncated, scored as the model's validation scores; None: the model's own."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    max_chars: int | None = Field(
        default=None, gt=0, description="evaluate the first N characters of the cleaned text (default: all of it)"
    )
    split: Literal["all", "val"] = Field(
        "all", description="all: the whole text; val: its held-out tail only, cut as the model's batches cut theirs"
    )
    skip_unknown: bool = Field(
        False, description="drop the characters the vocabulary lacks where it reserves no '<unk>' (counted)"
    )
    checkpoint: Literal["best", "last"] | None = Field(
        None, description="the weights evaluated: best by validation or the last epoch's (default: the model's own)"
    )
    streams: int | None = Field(
        None, gt=0, description="parallel streams scored at once (default: the model's batch size, as validation)"
    )
    num_steps: int | None = Field(
        None, gt=0, description="characters read per step of each stream (default: the model's batches' num_steps)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: the device that trained the model where this machine has it, else the CPU"
    )


@dataclass(frozen=True)
class TrainedWith:
    """What the model's artifacts say of how it was trained and validated."""

    batch_size: int
    num_steps: int
    val_fraction: float
    device: str  # "cpu" or "cuda"
    checkpoints: tuple[Literal["best", "last"], ...]  # the weights the model keeps, its default first
    model: str  # the model's short key, for messages


def resolve(params: EvaluateParams, trained: TrainedWith, cuda_available: Callable[[], bool]) -> EvaluateParams:
    """Every default made concrete (what is keyed is what is used); a held-out tail asked of a model trained
    without one, and CUDA where there is none, refused."""
    if params.split == "val" and trained.val_fraction == 0:
        raise NoValidationSplit(
            f"model {trained.model} was trained without a validation split (--val-fraction 0), so --split val has "
            "no held-out tail to evaluate; evaluate --split all, or a model trained with --val-fraction"
        )
    if params.checkpoint is not None and params.checkpoint not in trained.checkpoints:
        raise ParameterError(
            f"model {trained.model} keeps no {params.checkpoint} checkpoint (it keeps: "
            f"{', '.join(trained.checkpoints)}); evaluate --checkpoint {trained.checkpoints[0]}"
        )
    device = params.device
    if device == "auto":
        device = "cuda" if trained.device == "cuda" and cuda_available() else "cpu"
    elif device == "cuda" and not cuda_available():
        raise DeviceUnavailable("device='cuda' but no CUDA device is visible; use --device cpu or auto")
    return params.model_copy(
        update={
            "checkpoint": params.checkpoint or trained.checkpoints[0],
            "streams": params.streams or trained.batch_size,
            "num_steps": params.num_steps or trained.num_steps,
            "device": device,
        }
    )


def check_resolved(params: EvaluateParams) -> tuple[int, int]:
    """Only resolved settings are keyed and scored (what is keyed is what is used): their streams and num_steps."""
    if params.checkpoint is None or params.streams is None or params.num_steps is None or params.device == "auto":
        raise ValueError("resolve the evaluation's parameters (tasks.evaluate.resolve) before keying or scoring")
    return params.streams, params.num_steps


def evaluated_range(chars: int, params: EvaluateParams, val_fraction: float) -> tuple[int, int]:
    """[start, end) of the text's characters evaluated: the first `max_chars`, then their held-out tail."""
    end = chars if params.max_chars is None else min(chars, params.max_chars)
    start = split_validation(end, val_fraction) if params.split == "val" else 0
    return start, end


def cut(chunks: Iterable[str], start: int, end: int) -> Iterator[str]:
    """Characters [start, end) of a text given in chunks."""
    offset = 0
    for chunk in chunks:
        if offset >= end:
            return
        piece = chunk[max(0, start - offset) : end - offset]
        offset += len(chunk)
        if piece:
            yield piece


@dataclass(frozen=True)
class Mapped:
    """A text as the model's indices, and what became of the characters its vocabulary lacks."""

    indices: np.ndarray  # (chars - unknown_skipped,) int32
    chars: int  # the text's characters
    unknown_mapped: int  # became <unk>
    unknown_skipped: int  # dropped (skip_unknown)


def to_indices(chunks: Iterable[str], vocab: Vocab, skip_unknown: bool) -> Mapped:
    """The text in the vocabulary's indices, read whole before anything is scored: unknown characters become
    `<unk>` where it is reserved, are dropped with `skip_unknown`, and are refused otherwise, counted and the
    first few named."""
    table = lookup_table(vocab)
    parts: list[np.ndarray] = []
    chars = unknown = 0
    seen: set[int] = set()
    first: list[int] = []  # distinct unknown code points, in the order they first appear
    for chunk in chunks:
        cps = code_points(chunk)  # (chunk chars,) uint16 or uint32
        ids = np.take(table, cps, mode="wrap")  # (chunk chars,) int32, -1 outside the vocabulary
        missing = ids < 0  # (chunk chars,) bool
        if missing.any():
            unknown += int(missing.sum())
            distinct, at = np.unique(cps[missing], return_index=True)
            for cp in map(int, distinct[np.argsort(at)]):  # a loop over distinct characters, not positions
                if cp not in seen:
                    seen.add(cp)
                    if len(first) < SHOWN:
                        first.append(cp)
            if vocab.unk is not None:
                ids[missing] = vocab.unk
            else:
                ids = ids[~missing]
        parts.append(ids)
        chars += len(cps)
    if unknown and vocab.unk is None and not skip_unknown:
        shown = ", ".join(repr(chr(cp)) for cp in first) + (", …" if len(seen) > len(first) else "")
        raise UnknownCharacters(
            f"the text has {unknown:,} characters the model's vocabulary lacks ({len(seen):,} distinct: {shown}) "
            f"and the vocabulary reserves no {UNK!r} to map them to; pass --skip-unknown to drop them (they are "
            f"counted), or evaluate a model whose vocabulary reserves {UNK!r}"
        )
    if chars == unknown:
        raise EvaluateError(
            f"the text has no character the model knows ({chars:,} characters, none in its vocabulary of "
            f"{len(vocab):,}); evaluate it on a model trained on text like it"
        )
    indices = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)  # (chars - skipped,) int32
    if len(indices) < 2:
        raise EvaluateError(
            f"the text evaluated has {len(indices)} character{'s' * (len(indices) != 1)}: at least 2 are needed "
            "(one predicted from another); give a longer text, or a larger --max-chars"
        )
    mapped = unknown if vocab.unk is not None else 0
    return Mapped(indices, chars, unknown_mapped=mapped, unknown_skipped=unknown - mapped)


def evaluate(model: CharModel, mapped: Mapped, params: EvaluateParams) -> Score:
    """The summed negative log-likelihood of every next character, as validation scores it (params resolved)."""
    import torch

    from tasks.train.scoring import score

    keep_freed_memory()
    streams, num_steps = check_resolved(params)
    return score(model, mapped.indices, num_steps=num_steps, streams=streams, device=torch.device(params.device))

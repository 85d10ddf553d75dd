"""A sweep's grid: `NAME=V1,V2,...` entries over training and batches settings, every combination one run.

Each value is parsed and checked by its own field's model (`TrainParams`, `BatchesParams`), every combination
built whole, before any work; a grid over the prepare settings is refused (a sweep trains on one corpus version).
"""

from __future__ import annotations

import itertools
import os
import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from tasks.batches import BatchesParams
from tasks.clean import CleanParams
from tasks.errors import ParameterError
from tasks.ingest import IngestParams
from tasks.train.params import TrainParams
from tasks.vocab import VocabParams

# A typo such as `--grid seed=0,...` over hundreds of values would queue hours of training: refused past this.
MAX_RUNS = 256
# Runs trained at once by default: on a small machine two processes share its cores (each with half the torch
# threads) and finish sooner together than one after the other (see docs/deployments.md#sweeps).
DEFAULT_PARALLEL = 2
MAX_PARALLEL = 64

SWEPT_MODELS: tuple[type[BaseModel], ...] = (BatchesParams, TrainParams)
PREPARE_MODELS: tuple[type[BaseModel], ...] = (IngestParams, CleanParams, VocabParams)


class GridError(ParameterError):
    """A grid entry that names no sweepable setting, or a value its setting's model refuses."""


class SweepParams(BaseModel):
    """What a sweep varies and how many of its runs train at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grid: tuple[str, ...] = Field(
        (),
        validate_default=True,
        description="NAME=V1,V2,...: a training or batches setting (hidden, lr, model, layers, optimizer, "
        "batch_size, num_steps, seed, ...) and its values, repeatable; every combination is one run",
    )
    max_parallel: int = Field(
        DEFAULT_PARALLEL,
        ge=1,
        le=MAX_PARALLEL,
        description="runs trained at once: here each in a process of its own with cores ÷ N torch threads; on a "
        "Dask cluster, train tasks at once",
    )

    @field_validator("grid")
    @classmethod
    def _not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("a sweep needs at least one --grid NAME=V1,V2,... (hidden=128,256, say)")
        return value


def fields() -> dict[str, type[BaseModel]]:
    """Each sweepable setting and the model that checks it (the seed: both, the batches' first)."""
    found: dict[str, type[BaseModel]] = {}
    for model in SWEPT_MODELS:
        for name in model.model_fields:
            found.setdefault(name, model)
    return found


def parse_entry(entry: str) -> tuple[str, list[str]]:
    """`NAME=V1,V2` -> (NAME, [V1, V2]): the syntax only; `ValueError` naming the entry and the fix."""
    name, equals, values = entry.partition("=")
    name = name.strip().replace("-", "_")
    parts = [v.strip() for v in values.split(",")]
    if not equals or not name or any(not v for v in parts):
        raise ValueError(f"--grid {entry!r} is not NAME=V1,V2,... (hidden=128,256, say)")
    if len(set(parts)) < len(parts):
        raise ValueError(f"--grid {entry!r} repeats a value; give each once")
    return name, parts


def _accepts_none(model: type[BaseModel], name: str) -> bool:
    annotation = model.model_fields[name].annotation
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(
        annotation
    )


def parse_values(entry: str) -> tuple[str, list[Any]]:
    """One entry's setting and its values, each parsed and checked by the setting's model alone."""
    try:
        name, texts = parse_entry(entry)
    except ValueError as exc:
        raise GridError(str(exc)) from None
    owners = fields()
    if name not in owners:
        if any(name in model.model_fields for model in PREPARE_MODELS):
            raise GridError(
                f"--grid {entry!r}: {name} is a prepare setting, and a sweep trains on one corpus version; give "
                f"--{name.replace('_', '-')} once and run one sweep per value"
            )
        raise GridError(
            f"--grid {entry!r}: {name} is not a training or batches setting; choose among {', '.join(owners)}"
        )
    model = owners[name]
    if typing.get_origin(model.model_fields[name].annotation) is tuple:
        raise GridError(f"--grid {entry!r}: {name} takes several values of its own; give it once, outside the grid")
    # The field's own type, bounds and choices, in lax mode: "128" becomes 128 where the field is an integer.
    field = model.model_fields[name]
    adapter: TypeAdapter[Any] = TypeAdapter(Annotated[field.annotation, field])  # type: ignore[arg-type]
    values: list[Any] = []
    for text in texts:
        raw: Any = None if text.lower() == "none" and _accepts_none(model, name) else text
        try:
            values.append(adapter.validate_python(raw))
        except ValidationError as exc:
            problem = "; ".join(error["msg"] for error in exc.errors())
            raise GridError(f"--grid {entry!r}: {name}={text}: {problem}") from None
    return name, values


def expand(grid: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the first entry's slowest: [{name: value, ...}, ...]."""
    parsed = [parse_values(entry) for entry in grid]
    names = [name for name, _ in parsed]
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        raise GridError(f"{', '.join(repeated)} named in more than one --grid entry; give its values once")
    combinations = [dict(zip(names, values, strict=True)) for values in itertools.product(*(v for _, v in parsed))]
    if len(combinations) > MAX_RUNS:
        raise GridError(f"the grid makes {len(combinations)} runs, more than {MAX_RUNS}; sweep fewer values at once")
    return combinations


def shown(combination: dict[str, Any]) -> str:
    """`hidden=128, lr=1.0`: a run as its grid names it."""
    return ", ".join(f"{name}={value}" for name, value in combination.items())


def runs(settings: dict[str, Any], grid: tuple[str, ...]) -> list[tuple[dict[str, Any], BatchesParams, TrainParams]]:
    """Each combination with the flat `settings` it overrides, built into its batches and training models: a
    combination the models refuse together (weight_decay with sgd, say) is named."""
    made = []
    for combination in expand(grid):
        merged = {**settings, **combination}
        try:
            sampler = BatchesParams(**{k: v for k, v in merged.items() if k in BatchesParams.model_fields})
            training = TrainParams(**{k: v for k, v in merged.items() if k in TrainParams.model_fields})
        except ValidationError as exc:
            problem = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}".lstrip(": ")
                for e in exc.errors()
            )
            raise GridError(f"the grid's run {shown(combination)}: {problem}") from None
        made.append((combination, sampler, training))
    return made


def threads_per_run(runs_at_once: int, cores: int | None = None) -> int:
    """Torch threads for each of `runs_at_once` runs sharing this machine: its cores, shared out (at least one)."""
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    return max(1, cores // max(1, runs_at_once))

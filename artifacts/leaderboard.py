"""Runs compared: the leaderboard (`charflow inspect runs`), a model's figures beside another's (`inspect diff`),
their perplexity per epoch (`inspect compare`) and the aliases with every move (`inspect aliases`). Tables as
rows of plain values: the command line prints them, or dumps them as JSON."""

from __future__ import annotations

import math
from typing import Any, Literal

import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator

from artifacts.aliases import aliases_of, moves_of
from artifacts.catalog import Entry
from artifacts.manifest import Manifest
from artifacts.model import METRICS_FILE, TrainSummary
from artifacts.runs import Run, run_of, runs_of
from artifacts.store import ArtifactRef
from artifacts.store import Entry as StoreEntry
from tasks.errors import ParameterError

# A run's fields that order runs (its parameters and batches settings are dictionaries: shown, not sorted by).
SORTABLE = tuple(name for name in Run.model_fields if name not in ("params", "batches"))
# The default checkpoint's perplexity, lowest first: the best model on top.
DEFAULT_SORT = "checkpoint_perplexity"
# The run fields `inspect diff` sets side by side for two models.
DELTAS = ("perplexity", "val_perplexity", "best_val_perplexity", "bits_per_char", "tokens_per_s", "seconds")


class RunsParams(BaseModel):
    """How `inspect runs` orders the leaderboard."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sort: str = Field(DEFAULT_SORT, description=f"the run field to order by: {', '.join(SORTABLE)}")
    reverse: bool = Field(False, description="largest first (e.g. --sort tokens_per_s --reverse)")

    @field_validator("sort")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in SORTABLE:
            raise ValueError(f"no run field {value!r}; choose one of {', '.join(SORTABLE)}")
        return value


class CompareParams(BaseModel):
    """What `inspect compare` draws and where."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: Literal["val", "train"] | None = Field(
        None, description="the perplexity drawn; none given: validation where every model has it, else training"
    )
    chart: str | None = Field(None, description="write the chart to this PNG file")
    publish: bool = Field(False, description="also publish the chart and table as a Prefect artifact")


class CompareError(ParameterError):
    """A comparison asked of artifacts that are not models, or of a metric a model lacks."""


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def row_of(run: Run, aliases: list[str]) -> dict[str, Any]:
    """One leaderboard row: where the run comes from, its settings, its figures, and the aliases naming it."""
    params, batches = run.params, run.batches
    return {
        "ref": f"{run.corpus}@v{run.version}",
        "corpus": run.corpus,
        "version": run.version,
        "model": run.model,
        "kind": params.get("model"),
        "hidden": params.get("hidden"),
        "layers": params.get("layers"),
        "lr": params.get("lr"),
        "optimizer": params.get("optimizer"),
        "sampler": batches.get("sampler"),
        "batch_size": batches.get("batch_size"),
        "num_steps": batches.get("num_steps"),
        "epochs": run.epochs,
        "perplexity": run.perplexity,
        "val_perplexity": run.val_perplexity,
        "best_val_perplexity": run.best_val_perplexity,
        "best_epoch": run.best_epoch,
        "checkpoint_perplexity": run.checkpoint_perplexity,
        "bits_per_char": run.bits_per_char,
        "tokens_per_s": run.tokens_per_s,
        "seconds": run.seconds,
        "device": run.device,
        "created": run.created,
        "aliases": aliases,
    }


def leaderboard(entries: list[Entry], corpus: str | None, params: RunsParams | None = None) -> list[dict[str, Any]]:
    """Every recorded run (of `corpus`) as a row, ordered by `params.sort` (ties: oldest first)."""
    params = params or RunsParams()
    named: dict[tuple[str, str], list[str]] = {}
    for (where, name), model in sorted(aliases_of(entries, corpus).items()):
        named.setdefault((where, model), []).append(name)
    runs = runs_of(entries, corpus)
    # Runs lacking the figure (no validation, say) last, whichever way the rest is ordered.
    present = [run for run in runs if not _missing(getattr(run, params.sort))]
    ordered = sorted(present, key=lambda run: getattr(run, params.sort), reverse=params.reverse)
    ordered += [run for run in runs if _missing(getattr(run, params.sort))]
    return [row_of(run, named.get((run.corpus, run.model), [])) for run in ordered]


def aliases_table(entries: list[Entry], corpus: str | None, history: bool) -> list[dict[str, Any]]:
    """Each alias as it stands (model, since, why), or with `history` every move (from, to, when, why)."""
    moves = moves_of(entries, corpus)
    if history:
        return [
            {"corpus": m.corpus, "name": m.name, "from": m.previous, "to": m.model, "when": m.created, "why": m.why}
            for m in moves
        ]
    last = {(m.corpus, m.name): m for m in moves}
    return [
        {"corpus": m.corpus, "name": m.name, "model": m.model, "since": m.created, "why": m.why}
        for (_, _), m in sorted(last.items())
        if m.model is not None
    ]


def model_run(entries: list[Entry], found: StoreEntry) -> Run:
    """A model's run as recorded, or as its manifest and metrics make it (a model no version records)."""
    for run in runs_of(entries):
        if run.model == found.key:
            return run
    ref = ArtifactRef(stage="train", key=found.key, path=found.path)
    return run_of(ref, "", 0, None)


def metric_deltas(a: Run, b: Run) -> dict[str, dict[str, float | None]]:
    """Each figure of two models: a, b and b - a (None where either lacks it)."""
    out: dict[str, dict[str, float | None]] = {}
    for name in DELTAS:
        x, y = getattr(a, name), getattr(b, name)
        out[name] = {"a": x, "b": y, "delta": None if x is None or y is None else y - x}
    return out


def curve(found: StoreEntry) -> list[dict[str, Any]]:
    """A model's metrics per epoch: epoch, perplexity, val_perplexity (None on epochs not validated)."""
    table = pq.ParquetFile(found.path / METRICS_FILE).read(columns=["epoch", "perplexity", "val_perplexity"])
    return table.to_pylist()


def has_validation(manifest: Manifest) -> bool:
    return TrainSummary.of(manifest).val_perplexity is not None


def comparison(models: list[StoreEntry], labels: list[str], metric: str | None) -> tuple[str, list[dict[str, Any]]]:
    """The metric drawn ("val" or "train") and a row per model and epoch: label, model, epoch, perplexity."""
    if not models or any(m.stage != "train" for m in models):
        wrong = ", ".join(f"{m.stage} {m.key[:12]}" for m in models if m.stage != "train")
        raise CompareError(
            f"compare takes models (train artifacts), not {wrong}; name each by key or corpus@NAME/train"
        )
    validated = [has_validation(m.manifest) for m in models]
    chosen = metric or ("val" if all(validated) else "train")
    if chosen == "val" and not all(validated):
        lacking = ", ".join(m.key[:12] for m, v in zip(models, validated, strict=True) if not v)
        raise CompareError(
            f"model {lacking} was trained without validation, so it has no validation perplexity; use --metric "
            "train, or train with --val-fraction"
        )
    column = "val_perplexity" if chosen == "val" else "perplexity"
    rows = [
        {"label": label, "model": m.key, "epoch": row["epoch"], "perplexity": row[column]}
        for m, label in zip(models, labels, strict=True)
        for row in curve(m)
        if row[column] is not None
    ]
    return chosen, rows

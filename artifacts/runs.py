"""Runs: every model key recorded once in the catalog, with what it was trained on and how well it did, for
`charflow inspect runs` (a leaderboard), `inspect diff` and the quality gate.

A run is made from the model's manifest and metrics alone, so the first command to meet a model that was never
recorded (killed between publishing and recording, or made before runs existed) records it, whenever that is.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from artifacts.catalog import Catalog, Entry
from artifacts.manifest import Manifest, read_manifest
from artifacts.model import METRICS_FILE, TrainSummary
from artifacts.store import ArtifactRef, Store

# The batches settings a run shows beside its training ones: the rest (the seed aside) never change a model.
BATCHES_SHOWN = ("sampler", "batch_size", "num_steps", "epochs", "seed", "val_fraction")


class Run(BaseModel):
    """One model: its corpus version, its settings, and its figures (perplexities per character; bits per
    character = log2 of a perplexity)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    corpus: str
    version: int
    model: str  # the model artifact's key
    params: dict[str, Any]  # the train stage's parameters
    batches: dict[str, Any]  # the batches settings it was trained on (BATCHES_SHOWN)
    epochs: int  # epochs trained (fewer than asked when --patience stopped it)
    perplexity: float  # training perplexity, last epoch
    val_perplexity: float | None  # validation perplexity, last epoch validated (None: no held-out tail)
    best_epoch: int | None
    best_val_perplexity: float | None
    # The default checkpoint's (the one generate and evaluate load): validation where there is any, else training.
    checkpoint_perplexity: float
    bits_per_char: float
    tokens_per_s: float | None
    seconds: float  # training time, every epoch's (a resumed run's too)
    device: str
    created: str  # when the model was made
    recorded: str = ""  # when this entry was written


def bits(perplexity: float) -> float:
    return math.log2(perplexity) if perplexity > 0 else float("nan")


def run_of(model: ArtifactRef | Manifest, corpus: str, version: int, batches: Manifest | None) -> Run:
    """A model's run, read from its manifest and metrics (and its batches' manifest, where at hand)."""
    manifest = model if isinstance(model, Manifest) else read_manifest(model.path)
    path = model.path if isinstance(model, ArtifactRef) else None
    summary = TrainSummary.of(manifest)
    tokens = seconds = 0.0
    if path is not None and (path / METRICS_FILE).is_file():
        metrics = pq.ParquetFile(path / METRICS_FILE).read(columns=["tokens_per_s", "seconds"]).to_pylist()
        seconds = sum(row["seconds"] or 0.0 for row in metrics)
        tokens = sum((row["tokens_per_s"] or 0.0) * (row["seconds"] or 0.0) for row in metrics)
    if summary.checkpoint == "best" and summary.best_val_perplexity is not None:
        default = summary.best_val_perplexity
    else:
        default = summary.val_perplexity if summary.val_perplexity is not None else summary.perplexity
    return Run(
        corpus=corpus,
        version=version,
        model=manifest.key,
        params=manifest.params,
        batches={k: v for k, v in (batches.params if batches else {}).items() if k in BATCHES_SHOWN}
        or {"sampler": summary.sampler, "epochs": summary.epochs},
        epochs=summary.stopped_at or summary.epochs,
        perplexity=summary.perplexity,
        val_perplexity=summary.val_perplexity,
        best_epoch=summary.best_epoch,
        best_val_perplexity=summary.best_val_perplexity,
        checkpoint_perplexity=default,
        bits_per_char=bits(default),
        tokens_per_s=tokens / seconds if seconds and not math.isnan(tokens) else None,
        seconds=round(seconds, 3),
        device=str(manifest.params.get("device", "cpu")),
        created=manifest.created,
    )


def runs_of(entries: list[Entry], corpus: str | None = None) -> list[Run]:
    """Every run recorded (of `corpus`), oldest first."""
    return [
        Run.model_validate({k: v for k, v in e.items() if k != "event"})
        for e in entries
        if e.get("event") == "run" and (corpus is None or e["corpus"] == corpus)
    ]


def recorded(entries: list[Entry], model_key: str) -> bool:
    return any(e.get("event") == "run" and e["model"] == model_key for e in entries)


def run_entry(entries: list[Entry], run: Run) -> Entry | None:
    """The entry recording `run`: none when its model is recorded already (a model is one run, however often
    it is met again)."""
    if recorded(entries, run.model):
        return None
    stamped = run.model_copy(update={"recorded": datetime.now(UTC).isoformat(timespec="milliseconds")})
    return {"event": "run", **stamped.model_dump(mode="json")}


def record_run(catalog: Catalog, store: Store, corpus: str, version: int, model: ArtifactRef) -> Run | None:
    """Record `model` as a run of corpus@version unless it is already (a cache hit costs one catalog read): the
    run this call recorded, None when it was recorded already (by another writer too), so that what follows a
    first recording (MLflow's copy) happens once per model."""
    if recorded(catalog.entries(), model.key):
        return None
    batches = store.lookup("batches", TrainSummary.of(model).batches_key)
    run = run_of(model, corpus, version, batches)
    entry = catalog.append(lambda entries: run_entry(entries, run))
    return None if entry is None else Run.model_validate({k: v for k, v in entry.items() if k != "event"})


def record(catalog: Catalog, store: Store, corpus: str, version: int, outputs: dict[str, ArtifactRef]) -> Run | None:
    """What a pipeline records of a run's outputs: the keys against the corpus version, and a model as a run
    (the run, where this call recorded it: see record_run)."""
    catalog.record_outputs(corpus, version, {stage: ref.key for stage, ref in outputs.items()})
    if "train" in outputs:
        return record_run(catalog, store, corpus, version, outputs["train"])
    return None


def version_of(entries: list[Entry], key: str) -> tuple[str, int] | None:
    """The corpus version an artifact was last recorded against, if any."""
    found = None
    for entry in entries:
        if entry.get("event") == "outputs" and key in entry["outputs"].values():
            found = (entry["corpus"], entry["version"])
    return found

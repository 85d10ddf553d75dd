"""The reingest flow: look at every source, and prepare (or train on) only what is new or changed; with
`promote`, the quality gate decides whether each new version's model takes the alias (flows/gate.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.states import Completed

from artifacts.decisions import check_gate
from flows import compute, pipeline
from flows.compute import ConfiguredTaskRunner
from flows.gate import decided_task, gate
from flows.params import flat_flow
from flows.pipeline import Prepared, PrepareParams, pick
from flows.prefect_tasks import PrefectRunner, expand_task, fetch_task, known_version_task
from flows.prepare import prepare
from flows.publish import publish_table
from flows.run_page import show_parameters
from flows.train import train as train_flow
from tasks.batches import BatchesParams
from tasks.clean import CleanParams
from tasks.fetch import Located
from tasks.gate import GateParams
from tasks.ingest import IngestParams
from tasks.precheck import check_before_work
from tasks.train.params import TrainParams, check_validation
from tasks.vocab import VocabParams

# Where the daily schedule looks when it is given no sources: relative to the checkout the worker runs in.
DEFAULT_SOURCES = "corpora"


@flat_flow(
    "reingest",
    IngestParams,
    CleanParams,
    VocabParams,
    BatchesParams,
    TrainParams,
    GateParams,
    task_runner=ConfiguredTaskRunner(),
)
def reingest(sources: list[str] | None = None, train: bool = False, **settings: Any) -> Any:
    """Each file or zip in the folders / globs (and each URL) is a corpus: new content becomes its next version.
    Without sources, those under ./corpora, where a checkout has none until its user adds some: nothing to do
    then, not a failure. A source that is named and missing is an error. With `promote`, each new version's
    model takes that alias unless it is worse than the model the alias names (a version decided once)."""
    sampler = BatchesParams(**pick(BatchesParams, settings))
    training = TrainParams(**pick(TrainParams, settings))
    params = GateParams(**pick(GateParams, settings))
    check_gate(params, train, sampler)  # before any work
    if train:
        check_validation(training, sampler.val_fraction)
    run_settings = {k: v for k, v in settings.items() if k not in GateParams.model_fields}
    if sources is None:
        if not Path(DEFAULT_SOURCES).is_dir():
            message = (
                f"nothing to ingest: there is no ./{DEFAULT_SOURCES} folder in {Path.cwd()}; "
                "put text files or zips there, or pass sources"
            )
            get_run_logger().info(message)
            publish_table("reingest-summary", [], message)
            return []
        sources = [DEFAULT_SOURCES]
    prepare_params = PrepareParams.of(settings)
    if params.eval_source is not None:  # the text the gate compares on: there, before any work
        check_before_work(params.eval_source, prepare_params.ingest)
    shown = {**prepare_params.flat()}
    if train:
        shown.update({**sampler.model_dump(mode="json"), **training.model_dump(mode="json")})
        shown.update(params.model_dump(mode="json"))
    show_parameters({"sources": sources, "train": train, **shown})
    ingest = prepare_params.ingest

    def one(located: Located) -> dict:
        fetched = compute.call(fetch_task, located=located, patterns=ingest.patterns)
        known = compute.call(known_version_task, corpus=located.name, sha256=fetched.sha256)
        row = {"corpus": located.name, "status": "unchanged", "source": located.source}
        # Known content is done with, unless the gate has yet to decide its version (a run killed before deciding,
        # or --promote first given now) or is asked to decide again: its model is then trained (a cache hit where
        # it was) and decided.
        if known is not None and (
            params.promote is None
            or (
                not params.redecide
                and compute.call(decided_task, corpus=known.corpus, version=known.version, alias=params.promote)
            )
        ):
            return {**row, "version": known.version, "keys": ""}
        made = _made(located, train, prepare_params, sampler, training, run_settings)
        status = "unchanged" if not made.new_version else ("new" if made.version == 1 else "changed")
        keys = ", ".join(f"{stage} {ref.key[:12]}" for stage, ref in made.stages.items())
        done = {**row, "corpus": made.corpus, "status": status, "version": made.version, "keys": keys}
        if params.promote is not None:
            done["decision"] = gate(made, params, training.prefixes[0], training.seed)
        return done

    # On a Dask cluster, every corpus at once (each one's stages run on the workers); here, one after another.
    rows = compute.each(one, compute.call(expand_task, sources=sources, patterns=ingest.patterns))
    decided = [row["decision"] for row in rows if "decision" in row]
    message = f"{len(rows)} corpora looked at"
    if decided:
        message += "; " + "; ".join(
            d["message"] if d["decided_now"] else f"decided before: {d['message']}" for d in decided
        )
    shown_rows = [
        {**row, "decision": row.get("decision", {}).get("verdict", "")} if params.promote else row for row in rows
    ]
    publish_table("reingest-summary", shown_rows, message)
    return Completed(message=message, data=rows)


def _made(
    located: Located,
    train: bool,
    prepare_params: PrepareParams,
    sampler: BatchesParams,
    training: TrainParams,
    settings: dict[str, Any],
) -> Prepared:
    """One corpus prepared (and trained on): a subflow here; on a cluster, tasks of this run."""
    if compute.on_cluster():
        # Subflows started from several threads at once run one after another (Prefect serializes their
        # creation): on a cluster each corpus's stages are tasks of this run instead, tagged by corpus.
        runner = PrefectRunner(names_run=False)
        if train:
            return pipeline.train(runner, located, prepare_params, sampler, training)
        return pipeline.prepare(runner, located, prepare_params)
    if train:
        return train_flow(source=located.source, name=located.name, **settings)
    prepared = {k: v for model in (IngestParams, CleanParams, VocabParams) for k, v in pick(model, settings).items()}
    return prepare(source=located.source, name=located.name, **prepared)

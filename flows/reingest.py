"""The reingest flow: look at every source, and prepare (or train on) only what is new or changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger

from flows import compute, pipeline
from flows.compute import ConfiguredTaskRunner
from flows.params import flat_flow
from flows.pipeline import PrepareParams
from flows.prefect_tasks import PrefectRunner, expand_task, fetch_task, known_version_task
from flows.prepare import prepare
from flows.publish import publish_table
from flows.run_page import show_parameters
from flows.train import train as train_flow
from tasks.clean import CleanParams
from tasks.fetch import Located
from tasks.ingest import IngestParams
from tasks.vocab import VocabParams

# Where the daily schedule looks when it is given no sources: relative to the checkout the worker runs in.
DEFAULT_SOURCES = "corpora"


@flat_flow("reingest", IngestParams, CleanParams, VocabParams, task_runner=ConfiguredTaskRunner())
def reingest(sources: list[str] | None = None, train: bool = False, **settings: Any) -> list[dict]:
    """Each file or zip in the folders / globs (and each URL) is a corpus: new content becomes its next version.
    Without sources, those under ./corpora, where a checkout has none until its user adds some: nothing to do
    then, not a failure. A source that is named and missing is an error."""
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
    show_parameters({"sources": sources, "train": train, **prepare_params.flat()})
    ingest = prepare_params.ingest

    def one(located: Located) -> dict:
        fetched = compute.call(fetch_task, located=located, patterns=ingest.patterns)
        known = compute.call(known_version_task, corpus=located.name, sha256=fetched.sha256)
        row = {"corpus": located.name, "status": "unchanged", "source": located.source}
        if known is not None:
            return {**row, "version": known.version, "keys": ""}
        if compute.on_cluster():
            # Subflows started from several threads at once run one after another (Prefect serializes their
            # creation): on a cluster each corpus's stages are tasks of this run instead, tagged by corpus.
            runner = PrefectRunner(names_run=False)
            wiring = pipeline.train if train else pipeline.prepare
            made = wiring(runner, located, prepare_params)
        else:
            run = train_flow if train else prepare
            made = run(source=located.source, name=located.name, **settings)
        status = "unchanged" if not made.new_version else ("new" if made.version == 1 else "changed")
        keys = ", ".join(f"{stage} {ref.key[:12]}" for stage, ref in made.stages.items())
        return {**row, "corpus": made.corpus, "status": status, "version": made.version, "keys": keys}

    # On a Dask cluster, every corpus at once (each one's stages run on the workers); here, one after another.
    rows = compute.each(one, compute.call(expand_task, sources=sources, patterns=ingest.patterns))
    publish_table("reingest-summary", rows, f"{len(rows)} corpora looked at")
    return rows

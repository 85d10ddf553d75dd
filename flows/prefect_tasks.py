"""Every stage of the registry as a Prefect task under the content-key cache policy, the pipeline's other
steps as tasks, and the runner that makes the pipeline a Prefect flow's work."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from prefect import Task, get_run_logger, tags, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from artifacts import runs
from artifacts.backends import open_catalog, open_store
from artifacts.catalog import Catalog, CorpusVersion
from artifacts.refs import resolve
from artifacts.stages import STAGES, Stage, run_stage
from artifacts.store import ArtifactRef, Store
from flows import cluster, compute, home, interrupt, tracking
from flows.cache import content_key_policy
from flows.ddp import launch
from flows.pipeline import PrepareParams, vocab_key
from flows.progress import Presenter, artifact_line, version_line
from flows.publish import Published, publish
from flows.run_page import name_run, summarize_run
from tasks.errors import Interrupted
from tasks.fetch import Located, expand_sources, fetch, on_this_machine
from tasks.ingest import IngestParams
from tasks.members import MemberCount, count_member, counted_table, joined_counts, member_names
from tasks.sources import Fetched


def _store() -> Store:
    cluster.check_worker()
    return open_store(home.store_root())


def _catalog() -> Catalog:
    cluster.check_worker()
    return open_catalog(home.store_root())


def _here(store: Store, value: Any, params: BaseModel) -> Any:
    """An input as this machine has it: made or fetched on another Dask worker, it names that one's folder."""
    if isinstance(value, ArtifactRef):
        return store.local(value)
    if isinstance(value, Fetched):
        return on_this_machine(value, home.downloads_dir(), params.patterns)
    return value


def share_cores(hints: dict[str, Any] | None, log: Callable[[str], None]) -> None:
    """Runs trained at once (a sweep's hint "runs_at_once", never keyed) share this machine's cores: each sets its
    process's torch threads to its share (on a Dask worker, of those of its task slots that may train at once)."""
    at_once = (hints or {}).get("runs_at_once")
    if not at_once:
        return
    import torch

    from tasks.sweep import threads_per_run

    if "distributed" in sys.modules:
        from distributed import get_worker

        with contextlib.suppress(ValueError):  # ValueError: not on a worker
            at_once = min(at_once, get_worker().state.nthreads)
    torch.set_num_threads(threads_per_run(at_once))
    log(f"torch threads {torch.get_num_threads()}: {at_once} runs at once on {len(os.sched_getaffinity(0))} cores")


# Stages that train or draw run one at a time in a process (a Dask worker's task slots are its threads): torch's
# random generator, which seeds a model's initialisation and its dropout, and matplotlib, which draws the charts,
# are the process's, not the thread's (two trainings at once in threads gave one model the other's seed: the same
# key, other bytes). At once, they run in processes of their own (flows/sweep.py) or on other workers.
_ONE_AT_A_TIME = threading.Lock()
PROCESS_WIDE = ("vocab", "train", "evaluate")


def _one_at_a_time(stage: str) -> contextlib.AbstractContextManager[Any]:
    return _ONE_AT_A_TIME if stage in PROCESS_WIDE else contextlib.nullcontext()


def _stage_task(stage: Stage) -> Task:
    def run(inputs: dict[str, Any], params: BaseModel, hints: dict[str, Any] | None = None) -> ArtifactRef:
        logger = get_run_logger()
        presenter = Presenter(logger.info, warn=logger.warning)
        store = _store()
        share_cores(hints, logger.info)
        try:
            inputs = {name: _here(store, value, params) for name, value in inputs.items()}
            with interrupt.handled(), _one_at_a_time(stage.name):
                return run_stage(store, stage.name, params, presenter, interrupt.requested, hints, launch, **inputs)
        finally:
            presenter.close()

    def run_name(parameters: dict[str, Any]) -> str:
        return f"{stage.name} {stage.key(parameters['inputs'], parameters['params'])[:12]}"

    run.__name__ = run.__qualname__ = f"{stage.name}_stage"
    run.__doc__ = f"The {stage.name} stage: its stored artifact, built when missing."
    policy = content_key_policy(stage.name)
    return task(name=stage.name, task_run_name=run_name, cache_policy=policy, persist_result=True)(run)


STAGE_TASKS: dict[str, Task] = {name: _stage_task(stage) for name, stage in STAGES.items()}


@task(name="list-members", cache_policy=NO_CACHE)
def members_task(fetched: Fetched, params: IngestParams) -> list[str]:
    return member_names(on_this_machine(fetched, home.downloads_dir(), params.patterns), params)


@task(name="count-member", task_run_name="count {name}", cache_policy=NO_CACHE)
def count_member_task(fetched: Fetched, params: IngestParams, table: bytes, name: str) -> MemberCount:
    return count_member(on_this_machine(fetched, home.downloads_dir(), params.patterns), params, table, name)


@task(name="fetch", cache_policy=NO_CACHE)
def fetch_task(located: Located, patterns: tuple[str, ...]) -> Fetched:
    return fetch(located.source, home.downloads_dir(), located.sha256, patterns)


@task(name="find-artifact", cache_policy=NO_CACHE)
def find_task(ref: str, stage: str) -> ArtifactRef:
    return resolve(_store(), _catalog(), ref, stage, verify=True)


@task(name="expand-sources", cache_policy=NO_CACHE)
def expand_task(sources: list[str], patterns: tuple[str, ...]) -> list[Located]:
    return expand_sources(sources, patterns)


@task(name="known-version", cache_policy=NO_CACHE)
def known_version_task(corpus: str, sha256: str) -> CorpusVersion | None:
    known = [v for v in _catalog().versions(corpus) if v.sha256 == sha256]
    return known[0] if known else None


@task(name="register-version", cache_policy=NO_CACHE)
def register_task(corpus: str, fetched: Fetched, ingested: ArtifactRef) -> CorpusVersion:
    return _catalog().register(corpus, fetched.sha256, fetched.size, fetched.source, ingested.key)


@task(name="record-outputs", cache_policy=NO_CACHE)
def record_task(corpus: str, version: int, outputs: dict[str, ArtifactRef]) -> None:
    store = _store()
    if "train" in outputs:  # its metrics are read: on this machine (made on another Dask worker, perhaps)
        outputs = {**outputs, "train": store.local(outputs["train"])}
    run = runs.record(_catalog(), store, corpus, version, outputs)
    tracking.log_run(run, outputs.get("train"), store, get_run_logger().warning)  # once, as the run is recorded


@task(name="recorded-in", cache_policy=NO_CACHE)
def recorded_in_task(key: str) -> tuple[str, int] | None:
    return runs.version_of(_catalog().entries(), key)


class PrefectRunner:
    """The pipeline's steps as Prefect tasks of the current flow run; each stage's artifact shown in the UI,
    under its corpus's keys, its task run named by stage and short key and tagged by corpus, stage, sampler
    and model; the run itself named by corpus and version (`finish` adds the last stage and the summary)."""

    def __init__(self, names_run: bool = True) -> None:
        self.names_run = names_run  # False: one corpus among several of this flow run, which keeps its name
        self.corpus: str | None = None  # known once the source is fetched
        self.version: int | None = None  # known once registered
        self.stages: dict[str, ArtifactRef] = {}
        self.published: dict[str, Published] = {}

    def fetch(self, located: Located, patterns: tuple[str, ...]) -> Fetched:
        fetched = compute.call(fetch_task, located=located, patterns=patterns)
        self.corpus = located.name or fetched.name
        return fetched

    def count_members(self, fetched: Fetched, params: PrepareParams) -> Callable[[], Any]:
        """On a cluster, a many-file corpus's members counted at once on the workers (unless its vocabulary is
        stored already): a function that waits for them and sums their counts; None from it otherwise."""
        table = counted_table(params.clean)
        if not compute.on_cluster() or table is None or fetched.kind not in ("directory", "zip"):
            return lambda: None
        if _store().lookup("vocab", vocab_key(fetched, params)) is not None:
            return lambda: None
        names = compute.call(members_task, fetched=fetched, params=params.ingest)
        if len(names) < 2:
            return lambda: None
        futures = [
            count_member_task.submit(fetched=fetched, params=params.ingest, table=table, name=name) for name in names
        ]
        return lambda: joined_counts(fetched, [future.result() for future in futures], table)

    def stage(self, name: str, params: BaseModel, hints: dict[str, Any] | None = None, **inputs: Any) -> ArtifactRef:
        if interrupt.requested():
            raise Interrupted(f"stopped before the {name} stage; run the same command again to go on")
        labels = [f"stage:{name}"] + ([f"corpus:{self.corpus}"] if self.corpus else [])
        labels += [f"{field}:{getattr(params, field)}" for field in ("sampler", "model") if hasattr(params, field)]
        with tags(*labels):
            state = compute.run_task(STAGE_TASKS[name], inputs=inputs, params=params, hints=hints)
        ref: ArtifactRef = state.result()
        if state.name == "Cached":
            ref = ref.model_copy(update={"cache_hit": True})
        if compute.on_cluster():  # made on a worker: this machine's copy, for the summaries and the caller
            ref = _store().local(ref)
        get_run_logger().info(artifact_line(name, ref))
        self.stages[name] = ref
        self.published[name] = publish(_store(), ref, self.corpus)
        return ref

    def register(self, corpus: str, fetched: Fetched, ingested: ArtifactRef) -> CorpusVersion:
        version = compute.call(register_task, corpus=corpus, fetched=fetched, ingested=ingested)
        get_run_logger().info(version_line(version.corpus, version.version, version.new, version.sha256))
        self.corpus, self.version = version.corpus, version.version
        if self.names_run:
            name_run(self.corpus, self.version)
        return version

    def record(self, corpus: str, version: int, outputs: dict[str, ArtifactRef]) -> None:
        compute.call(record_task, corpus=corpus, version=version, outputs=outputs)

    def find(self, ref: str, stage: str) -> ArtifactRef:
        found = compute.call(find_task, ref=ref, stage=stage)
        return _store().local(found) if compute.on_cluster() else found

    def recorded_in(self, key: str) -> tuple[str, int] | None:
        return compute.call(recorded_in_task, key=key)

    def finish(self) -> None:
        """The run's page: named after its last stage's artifact, and one summary linking every stage's."""
        if self.stages:
            name_run(self.corpus, self.version, list(self.stages.values())[-1])
            summarize_run(self.corpus, self.version, self.stages, self.published)

"""A command answered from the store, without Prefect: when every stage it would run is stored intact, and its
corpus version and outputs are in the catalog already, its answer is the one a run would give, found by the
same wiring (`flows.pipeline`) on a runner that looks up instead of running. Nothing is run or written (the
local sources' digest cache aside). Anything missing, damaged or unrecorded: no answer, and the command runs
its flow, which makes what is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from artifacts import runs
from artifacts.backends import open_catalog, open_store
from artifacts.catalog import Catalog, CorpusVersion, outputs_entry
from artifacts.refs import resolve
from artifacts.settings import environment
from artifacts.stages import STAGES
from artifacts.store import ArtifactRef, Store
from flows import home, pipeline
from flows.pipeline import Prepared, PrepareParams, pick
from tasks.batches import BatchesParams
from tasks.evaluate import EvaluateParams
from tasks.fetch import Located, fetch, resolve_source
from tasks.sources import Fetched
from tasks.train.params import TrainParams


class NotStored(Exception):
    """What the command needs first is not in the store or the catalog."""


class StoreAnswer:
    """A `flows.pipeline.Runner` that finds each step's result in the store and the catalog, or stops."""

    def __init__(self, store: Store, catalog: Catalog, downloads: Path):
        self.store, self.catalog, self.downloads = store, catalog, downloads

    def fetch(self, located: Located, patterns: tuple[str, ...]) -> Fetched:
        # A URL is answered only from a download whose digest is pinned: without one, whether it changed is
        # the server's to say, and a download is work.
        if located.source.startswith(("http://", "https://")) and not (
            located.sha256 and any(self.downloads.glob(f"{located.sha256.lower()}-*"))
        ):
            raise NotStored("source")
        return fetch(located.source, self.downloads, located.sha256, patterns)

    def stage(self, name: str, params: BaseModel, hints: dict[str, Any] | None = None, **inputs: Any) -> ArtifactRef:
        key = STAGES[name].key(inputs, params)
        # Only this machine's folder: with a shared store, a lookup of a key missing here would download it.
        if not self.store.folder(name, key).is_dir() or (manifest := self.store.lookup(name, key)) is None:
            raise NotStored(name)
        return self.store.ref(manifest, cache_hit=True)

    def count_members(self, fetched: Fetched, params: PrepareParams) -> Callable[[], Any]:
        return lambda: None

    def register(self, corpus: str, fetched: Fetched, ingested: ArtifactRef) -> CorpusVersion:
        for version in self.catalog.versions(corpus):
            if version.sha256 == fetched.sha256:
                return version
        raise NotStored("version")

    def record(self, corpus: str, version: int, outputs: dict[str, ArtifactRef]) -> None:
        keys = {stage: ref.key for stage, ref in outputs.items()}
        entries = self.catalog.entries()
        if outputs_entry(entries, corpus, version, keys) is not None:
            raise NotStored("outputs")
        if "train" in keys and not runs.recorded(entries, keys["train"]):
            raise NotStored("run")

    def find(self, ref: str, stage: str) -> ArtifactRef:
        return resolve(self.store, self.catalog, ref, stage, verify=True)

    def recorded_in(self, key: str) -> tuple[str, int] | None:
        return runs.version_of(self.catalog.entries(), key)


def _runner() -> StoreAnswer:
    root = home.store_root()
    return StoreAnswer(open_store(root), open_catalog(root), home.downloads_dir())


def answer(
    command: str, source: str | None, name: str | None, sha256: str | None, settings: dict[str, Any]
) -> Prepared | None:
    """What `command` (prepare, batches or train) would return on these flat settings, if all of it is stored."""
    located = resolve_source(source, name, sha256, environment().data_path)
    params = PrepareParams.of(settings)
    try:
        runner = _runner()
        if command == "prepare":
            return pipeline.prepare(runner, located, params)
        sampler = BatchesParams(**pick(BatchesParams, settings))
        if command == "batches":
            return pipeline.batches(runner, located, params, sampler)
        return pipeline.train(runner, located, params, sampler, TrainParams(**pick(TrainParams, settings)))
    except NotStored:
        return None


def answer_train_on(batches: str, settings: dict[str, Any]) -> dict[str, ArtifactRef] | None:
    """What training on an existing batches artifact would return, if its model is stored."""
    try:
        return pipeline.train_on(_runner(), batches, TrainParams(**pick(TrainParams, settings)))
    except NotStored:
        return None


def answer_evaluate(model: str, text: str, params: EvaluateParams) -> dict[str, ArtifactRef] | None:
    """What evaluating a model on a text would return, if its evaluation (and a source's clean text) is stored."""
    try:
        return pipeline.evaluate(_runner(), model, text, params)
    except NotStored:
        return None

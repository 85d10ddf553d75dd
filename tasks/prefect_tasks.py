"""Every stage as a Prefect task, cached under one policy keyed by the artifact's content key."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.context import TaskRunContext
from prefect.locking.filesystem import FileSystemLockManager
from prefect.transactions import IsolationLevel

from artifacts import inspect as store_inspect
from artifacts.catalog import Catalog, CorpusVersion
from artifacts.manifest import read_manifest
from artifacts.store import ArtifactRef, Store
from charflow import settings
from tasks import stages
from tasks.ingest import Fetched, Located, expand_sources, fetch


def _prefect_dir(name: str) -> Path:
    return settings.charflow_home() / "prefect" / name


@dataclass
class ContentKeyPolicy(CachePolicy):
    """The Prefect cache key is the artifact's content key (stage, params, inputs, code, libraries).

    Prefect trusts its record even when the files it points to are gone, so the record is dropped
    whenever the store does not hold an intact artifact under that key: the task then recomputes.
    """

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        stage = task_ctx.task.name
        key = stages.stage_key(stage, inputs)
        if _store().lookup(stage, key) is None:
            (Path(self.key_storage) / key).unlink(missing_ok=True)
        return key


CONTENT_KEY = ContentKeyPolicy(
    key_storage=_prefect_dir("cache-keys"),
    isolation_level=IsolationLevel.SERIALIZABLE,
    lock_manager=FileSystemLockManager(lock_files_directory=_prefect_dir("locks")),
)


def _store() -> Store:
    return Store(settings.store_root())


@task(name="fetch", cache_policy=NO_CACHE)
def fetch_task(source: str, sha256: str | None, patterns: tuple[str, ...]) -> Fetched:
    return fetch(source, settings.downloads_dir(), sha256, patterns)


@task(name="ingest", cache_policy=CONTENT_KEY, persist_result=True)
def ingest_task(fetched: Fetched, params: stages.IngestParams) -> ArtifactRef:
    return stages.ingest_stage(_store(), fetched, params)


@task(name="clean", cache_policy=CONTENT_KEY, persist_result=True)
def clean_task(text: ArtifactRef, params: stages.CleanParams) -> ArtifactRef:
    return stages.clean_stage(_store(), text, params)


@task(name="vocab", cache_policy=CONTENT_KEY, persist_result=True)
def vocab_task(text: ArtifactRef, params: stages.VocabParams) -> ArtifactRef:
    return stages.vocab_stage(_store(), text, params)


@task(name="encode", cache_policy=CONTENT_KEY, persist_result=True)
def encode_task(text: ArtifactRef, vocab: ArtifactRef, params: stages.EncodeParams) -> ArtifactRef:
    return stages.encode_stage(_store(), text, vocab, params)


@task(name="batches", cache_policy=CONTENT_KEY, persist_result=True)
def batches_task(indices: ArtifactRef, params: stages.BatchesParams) -> ArtifactRef:
    return stages.batches_stage(_store(), indices, params)


@task(name="train", cache_policy=CONTENT_KEY, persist_result=True)
def train_task(batches: ArtifactRef, vocab: ArtifactRef, params: stages.TrainParams) -> ArtifactRef:
    return stages.train_stage(_store(), batches, vocab, params)


@task(name="find-artifact", cache_policy=NO_CACHE)
def find_task(stage: str, ref: str) -> ArtifactRef:
    return _store().find(stage, ref)


@task(name="expand-sources", cache_policy=NO_CACHE)
def expand_task(sources: list[str], patterns: tuple[str, ...]) -> list[Located]:
    return expand_sources(sources, patterns)


@task(name="known-version", cache_policy=NO_CACHE)
def known_version_task(corpus: str, sha256: str) -> CorpusVersion | None:
    known = [v for v in Catalog(settings.store_root()).versions(corpus) if v.sha256 == sha256]
    return known[0] if known else None


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary_task(key: str, rows: list[dict[str, Any]], description: str) -> None:
    create_table_artifact(key=key, table=rows, description=description)


@task(name="register-version", cache_policy=NO_CACHE)
def register_task(corpus: str, fetched: Fetched, ingested: ArtifactRef) -> CorpusVersion:
    return Catalog(settings.store_root()).register(corpus, fetched.sha256, fetched.size, fetched.source, ingested.key)


@task(name="record-outputs", cache_policy=NO_CACHE)
def record_task(corpus: str, version: int, outputs: dict[str, ArtifactRef]) -> None:
    Catalog(settings.store_root()).record_outputs(corpus, version, {stage: ref.key for stage, ref in outputs.items()})


def run_stage(stage_task: Any, **inputs: Any) -> ArtifactRef:
    """Run a stage task, mark its reference as a cache hit when Prefect served it from cache, and show what it
    made in Prefect's UI."""
    state = stage_task(**inputs, return_state=True)
    ref: ArtifactRef = state.result()
    if state.name == "Cached":
        ref = ref.model_copy(update={"cache_hit": True})
    publish(ref)
    return ref


def _markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(str(row[k]).replace("|", "\\|") for k in head) + " |" for row in rows]
    return "\n".join(lines)


def publish(ref: ArtifactRef) -> None:
    """Prefect UI artifacts under stable keys: a summary per stage (parameters, key, rows, files, a decoded
    sample), the vocabulary's most frequent symbols, the training metrics and samples."""
    root = settings.store_root()
    # The reference names its folder: no need to search the store for it.
    entry = store_inspect.Entry(ref.stage, ref.key, Path(ref.path), read_manifest(Path(ref.path)))
    shown = store_inspect.show(root, entry)
    manifest, view = shown["manifest"], shown["view"]
    params = [{"parameter": k, "value": json.dumps(v, ensure_ascii=False)} for k, v in manifest["params"].items()]
    files = [{"file": f"`{ref.path}/{f['name']}`", "rows": f["rows"], "bytes": f["size"]} for f in manifest["files"]]
    sample = json.dumps(view, ensure_ascii=False, indent=1, default=str)[:1500]
    markdown = "\n\n".join(
        [
            f"## {ref.stage} `{ref.key[:12]}`" + (" (cached)" if ref.cache_hit else ""),
            f"Content key `{ref.key}`, {entry.rows:,} rows, created {manifest['created']}.",
            _markdown_table(params) or "No parameters.",
            _markdown_table(files),
            f"```json\n{sample}\n```",
        ]
    )
    create_markdown_artifact(key=f"{ref.stage}-summary", markdown=markdown, description=f"{ref.stage} artifact")
    if ref.stage == "vocab":
        create_table_artifact(key="vocab-top-symbols", table=view["most_frequent"], description="most frequent symbols")
    if ref.stage == "train":
        metrics = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()} for m in view["metrics"]]
        create_table_artifact(key="training-metrics", table=metrics, description="perplexity per epoch")
        samples = "\n".join(f"- epoch {s['epoch']}, `{s['prefix']}`: {s['text']}" for s in view["samples"])
        create_markdown_artifact(
            key="training-samples", markdown=samples or "No samples.", description="greedy samples"
        )

"""The stage registry: each stage's name, parameters, inputs, the code and libraries behind its bytes, and how
its artifact is built from its inputs. Everything else (the Prefect tasks, the pipeline, inspection, the
command line) is generated from or looks things up here. No Prefect.

Adding a stage: one entry below with its build function, its pure module in `tasks/`, its artifact kind
(file names, schema, summary) in `artifacts/`, and its test.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from artifacts import batches as batches_kind
from artifacts import indices as indices_kind
from artifacts import text as text_kind
from artifacts import views
from artifacts import vocab as vocab_kind
from artifacts.fingerprint import code_fingerprint
from artifacts.keys import content_key, keyed_params, library_versions
from artifacts.manifest import Summary
from artifacts.model import TrainSummary
from artifacts.store import ArtifactRef, Store, StoreError
from artifacts.text_counts import COMPILED_MIN_BYTES, compiled_pays, count_text
from tasks.batches import BatchesParams, check_fits, epoch_size, plan_shards, split_validation, stored_batches
from tasks.clean import CleanedUtf8, CleanError, CleanParams, clean_stream
from tasks.encode import EncodeParams, encode_stream
from tasks.errors import Interrupted, ParameterError
from tasks.ingest import IngestParams, expected_bytes, ingest_utf8
from tasks.sources import Fetched
from tasks.text_reader import TextReader
from tasks.train.job import HeldOut, TrainJob, TrainResult
from tasks.train.params import TrainParams
from tasks.vocab import VocabParams, vocab_from_counts

log = logging.getLogger("charflow.stages")

OnEvent = Callable[[Any], None]
# Runs a training job on its `params.nproc` processes, in the work folder given (flows.ddp.launch: torchrun).
Launch = Callable[[TrainJob, Path, OnEvent, Callable[[], bool]], TrainResult]


def ignore(event: Any) -> None:
    pass


@dataclass(frozen=True)
class Build:
    """Where a build writes (`folder`), the store it reads inputs from, what it builds, where its events go."""

    folder: Path
    store: Store
    stage: str
    key: str
    on_event: OnEvent = ignore
    should_stop: Callable[[], bool] = lambda: False  # asked at safe points: a batch, a shard
    # What the caller already knows of the result, never part of the key: the vocab stage's "counts" (its
    # text's code point counts, summed from a many-file corpus's members counted apart).
    hints: Mapping[str, Any] = field(default_factory=dict)
    # How the caller runs a training job on several processes: storage starts no processes of its own.
    # None: one-process training only.
    launch: Launch | None = None


@dataclass(frozen=True)
class Stage:
    name: str  # its identity: hashed into every key, the store's folder, the Prefect task's name
    params: type[BaseModel]
    inputs: tuple[str, ...]  # artifacts (ArtifactRef) by name; the source (Fetched) for ingest
    summary: type[Summary]
    code: tuple[str, ...]  # modules (with the project modules they import) and `module:function`s
    libraries: tuple[str, ...]  # distributions whose versions change the bytes
    build: Callable[..., Summary] = field(repr=False)  # build(Build, **inputs, params=...) -> summary
    view: Callable[..., dict[str, Any]] = field(repr=False)  # what `inspect show` decodes (not keyed)

    @cached_property
    def fingerprint(self) -> str:
        return code_fingerprint(self.code)

    @cached_property
    def libraries_now(self) -> dict[str, str]:
        return library_versions(self.libraries)

    def digests(self, inputs: Mapping[str, Any]) -> dict[str, str]:
        """An input artifact counts by its key, a source by its bytes' digest."""
        if set(inputs) != set(self.inputs):
            raise TypeError(f"stage {self.name} takes inputs {self.inputs}, got {tuple(inputs)}")
        return {name: value.sha256 if isinstance(value, Fetched) else value.key for name, value in inputs.items()}

    def key(self, inputs: Mapping[str, Any], params: BaseModel) -> str:
        if not isinstance(params, self.params):
            raise TypeError(f"stage {self.name} takes {self.params.__name__}, got {type(params).__name__}")
        return content_key(self.name, keyed_params(params), self.digests(inputs), self.fingerprint, self.libraries_now)


def _load_compiled() -> None:
    import tasks.utf8

    tasks.utf8.load()


def build_ingest(build: Build, source: Fetched, params: IngestParams) -> text_kind.IngestSummary:
    size = expected_bytes(source, params)
    build.store.ensure_free(build.stage, size)
    if size >= COMPILED_MIN_BYTES:
        # The next stages decode a text this large in compiled loops: numba loads (0.35 s) while ingest waits
        # on the disk and on Arrow's UTF-8 check, which let go of the GIL.
        threading.Thread(target=_load_compiled, name="load-compiled").start()
    members: list[tuple[str, int]] = []
    metadata = {"stage": build.stage, "source": source.source, "sha256": source.sha256, "size": source.size}
    chars = text_kind.write_text_utf8(build.folder, ingest_utf8(source, params, members), metadata)
    return text_kind.IngestSummary(
        chars=chars,
        source=source.source,
        sha256=source.sha256,
        size=source.size,
        members=[text_kind.Member(name=name, bytes=size) for name, size in members],
    )


def text_reader(text: ArtifactRef) -> TextReader:
    """A text artifact as the clean and encode stages read it."""
    return TextReader(
        strings=partial(text_kind.iter_text, text.path),
        arrays=partial(text_kind.iter_text_arrays, text.path),
        compiled_pays=compiled_pays(text.path),
    )


def build_clean(build: Build, text: ArtifactRef, params: CleanParams) -> text_kind.TextSummary:
    cleaned = clean_stream(text_reader(text), params)
    metadata = {"stage": build.stage, "input": text.key}
    if isinstance(cleaned, CleanedUtf8):
        chars = text_kind.write_text_utf8(build.folder, cleaned.chunks, metadata)
    else:
        chars = text_kind.write_text(build.folder, cleaned.chunks, metadata)
    if chars == 0:
        raise CleanError("cleaning left no text (the replacements removed every character); change --replace")
    return text_kind.TextSummary(chars=chars)


def _import_libraries() -> None:
    """What the vocab stage loads after counting, loaded while the threads count: matplotlib for the chart
    (0.4 s)."""
    import artifacts.vocab_chart  # noqa: F401


def build_vocab_artifact(build: Build, text: ArtifactRef, params: VocabParams) -> vocab_kind.VocabSummary:
    counts = build.hints.get("counts")
    if counts is not None and int(counts.sum()) != text_kind.TextSummary.of(text).chars:
        log.warning("the members' counts do not add up to the %s text's characters: counting it", text.key[:12])
        counts = None
    if counts is None:
        counts = count_text(text.path, meanwhile=_import_libraries)
    else:
        _import_libraries()
    vocab = vocab_from_counts(counts, params)
    from artifacts.vocab_chart import frequency_chart

    policy = params.model_dump(mode="json")
    vocab_kind.write_vocab(build.folder, vocab, {"stage": build.stage, "policy": policy})
    frequency_chart(vocab, build.folder / vocab_kind.FREQUENCY_FILE)
    return vocab_kind.VocabSummary(size=len(vocab), reserved=vocab.reserved, policy=policy)


def build_encode(
    build: Build, text: ArtifactRef, vocab: ArtifactRef, params: EncodeParams
) -> indices_kind.EncodeSummary:
    build.store.ensure_free(build.stage, 4 * text_kind.TextSummary.of(text).chars)  # int32 per character
    source = {"vocab_key": vocab.key, "vocab_size": vocab_kind.VocabSummary.of(vocab).size}
    chunks = encode_stream(text_reader(text), vocab_kind.read_vocab(vocab.path))
    rows = indices_kind.write_indices(build.folder, chunks, {"stage": build.stage, "text_key": text.key, **source})
    return indices_kind.EncodeSummary(rows=rows, **source)


def build_batches(build: Build, indices: ArtifactRef, params: BatchesParams) -> batches_kind.BatchesSummary:
    """The training token stream (4 bytes a token, whatever the epochs); materialized, every batch's rows too."""
    encoded = indices_kind.EncodeSummary.of(indices)
    train_end = split_validation(encoded.rows, params.val_fraction)
    check_fits(train_end, params)
    sizes = [epoch_size(train_end, params, epoch) for epoch in range(params.stored_epochs)]
    rows = sum(size for _, size in sizes)
    tokens = build.folder / batches_kind.TOKENS_FILE
    if params.materialize:
        # The stream goes to a hidden file the shards are gathered from, gone before publishing.
        tokens = build.folder / f".{batches_kind.TOKENS_FILE}"
        build.store.ensure_free(build.stage, rows * batches_kind.row_bytes(params.num_steps) + 4 * train_end)
    else:
        build.store.ensure_free(build.stage, 4 * train_end)
    batches_kind.write_tokens(tokens, indices_kind.iter_indices(indices.path), train_end)
    summary = batches_kind.BatchesSummary(
        spec=params,
        vocab_key=encoded.vocab_key,
        vocab_size=encoded.vocab_size,
        indices_key=indices.key,
        train_indices=train_end,
        val_indices=encoded.rows - train_end,
        epochs=params.epochs,
        epochs_stored=params.stored_epochs,
        same_every_epoch=params.same_every_epoch,
        batches_per_epoch=[batches for batches, _ in sizes],
        rows=rows,
        tokens=rows * params.num_steps,
        shards=[],
    )
    if not params.materialize:
        return summary
    _, plans = plan_shards(train_end, params)
    shards = [batches_kind.Shard(file=batches_kind.shard_file(n), **plan) for n, plan in enumerate(plans)]
    summary = summary.model_copy(update={"shards": shards})
    common = {"stage": build.stage, **summary.model_dump(mode="json", exclude={"shards"})}
    batches = stored_batches(np.load(tokens, mmap_mode="r"), params)
    for number, shard in enumerate(shards, start=1):
        writer = batches_kind.BatchShardWriter(
            build.folder / shard.file, params.num_steps, {**common, "shard": shard.model_dump(mode="json")}
        )
        try:
            for _ in range(shard.batches):
                writer.write(*next(batches))
        finally:
            writer.close()
        build.on_event(batches_kind.ShardWritten(number, len(shards)))
        if build.should_stop() and number < len(shards):
            raise Interrupted(f"stopped after {number} of {len(shards)} batch shards; nothing was published")
    del batches
    tokens.unlink()
    return summary


def build_train(build: Build, batches: ArtifactRef, vocab: ArtifactRef, params: TrainParams) -> TrainSummary:
    from artifacts.train_run import run_job

    if params.device == "auto":
        raise ValueError("resolve the device (tasks.train.params.resolve_device) before keying a train stage")
    stored = batches_kind.BatchesSummary.of(batches)
    held_out = None
    if stored.val_indices:
        if build.store.lookup("encode", stored.indices_key) is None:
            raise StoreError(
                f"the encode artifact {stored.indices_key[:12]} behind batches {batches.key[:12]} is missing or "
                "damaged, and its held-out tail is needed for validation; run the batches command again"
            )
        held_out = HeldOut(encoded=build.store.folder("encode", stored.indices_key), start=stored.train_indices)
    work = build.store.work_folder(build.stage, build.key)  # made by whoever runs the job
    job = TrainJob(
        params=params,
        batches=batches.path,
        vocab_key=vocab.key,
        vocab=vocab.path,
        held_out=held_out,
        checkpoint=work / "checkpoint.pt",
        output=build.folder,
        metadata={"stage": build.stage, "vocab_key": vocab.key, "batches_key": batches.key},
    )
    if params.nproc == 1:
        result = run_job(job, on_event=build.on_event, should_stop=build.should_stop)
    elif build.launch is None:
        raise ParameterError(f"--nproc {params.nproc} needs a launcher of processes; this caller has none")
    else:
        result = build.launch(job, work, build.on_event, build.should_stop)
    return TrainSummary(vocab_key=vocab.key, batches_key=batches.key, **result.model_dump())


def _stages(*stages: Stage) -> dict[str, Stage]:
    return {stage.name: stage for stage in stages}


_ARRAYS = ("numpy", "pyarrow")
# Each stage's bytes come from its pure module, its artifact kind's writer and its build function here.
STAGES = _stages(
    Stage(
        name="ingest",
        params=IngestParams,
        inputs=("source",),
        summary=text_kind.IngestSummary,
        code=("tasks.ingest", "artifacts.text", "artifacts.stages:build_ingest"),
        libraries=_ARRAYS,
        build=build_ingest,
        view=views.text,
    ),
    Stage(
        name="clean",
        params=CleanParams,
        inputs=("text",),
        summary=text_kind.TextSummary,
        code=(
            "tasks.clean",
            "tasks.utf8",
            "artifacts.text",
            "artifacts.text_counts",
            "artifacts.stages:text_reader",
            "artifacts.stages:build_clean",
        ),
        libraries=(*_ARRAYS, "numba"),
        build=build_clean,
        view=views.text,
    ),
    Stage(
        name="vocab",
        params=VocabParams,
        inputs=("text",),
        summary=vocab_kind.VocabSummary,
        code=(
            "tasks.vocab",
            "tasks.utf8",
            "artifacts.text_counts",
            "artifacts.vocab",
            "artifacts.vocab_chart",
            "artifacts.stages:build_vocab_artifact",
        ),
        libraries=(*_ARRAYS, "numba", "matplotlib", "mplfonts"),
        build=build_vocab_artifact,
        view=views.vocab,
    ),
    Stage(
        name="encode",
        params=EncodeParams,
        inputs=("text", "vocab"),
        summary=indices_kind.EncodeSummary,
        code=(
            "tasks.encode",
            "tasks.utf8",
            "artifacts.text",
            "artifacts.text_counts",
            "artifacts.vocab",
            "artifacts.indices",
            "artifacts.stages:text_reader",
            "artifacts.stages:build_encode",
        ),
        libraries=(*_ARRAYS, "numba"),
        build=build_encode,
        view=views.indices,
    ),
    Stage(
        name="batches",
        params=BatchesParams,
        inputs=("indices",),
        summary=batches_kind.BatchesSummary,
        code=("tasks.batches", "artifacts.indices", "artifacts.batches", "artifacts.stages:build_batches"),
        libraries=_ARRAYS,
        build=build_batches,
        view=views.batches,
    ),
    Stage(
        name="train",
        params=TrainParams,
        inputs=("batches", "vocab"),
        summary=TrainSummary,
        code=(
            "tasks.train.loop",
            "tasks.train.job",
            "artifacts.batch_reader",
            "artifacts.indices",
            "artifacts.model",
            "artifacts.train_run",  # the run of a job: the one process's, every torchrun rank's
            "flows.ddp",  # the multi-process path: its launcher and what each rank runs
            "flows.ddp_rank",
            "artifacts.stages:build_train",
        ),
        libraries=(*_ARRAYS, "torch", "matplotlib"),
        build=build_train,
        view=views.model,
    ),
)


@dataclass(frozen=True)
class OtherLibraries:
    """An artifact of the very same work (parameters, inputs, code) exists, made with another version of
    `library`: the miss comes from the environment, not from the data or the code."""

    stage: str
    key: str  # the existing artifact's
    library: str
    here: str
    there: str

    def __str__(self) -> str:
        return (
            f"{self.library} {self.here} is installed, but {self.stage} artifact {self.key[:12]} was made with "
            f"{self.library} {self.there}: it is rebuilt, as library versions are part of the content key. "
            "Install the pinned versions (scripts/setup.sh) to reuse the store."
        )


_warned: set[str] = set()


def explain_miss(store: Store, stage: Stage, params: dict[str, Any], inputs: dict[str, str], on_event: OnEvent) -> None:
    """Say so once per library and process when a miss comes from other library versions (another machine's,
    with a shared store)."""
    for entry in store.entries([stage.name]):  # with a shared store, other machines' artifacts too
        manifest = entry.manifest
        if (manifest.params, manifest.inputs, manifest.code) != (params, inputs, stage.fingerprint):
            continue
        for library, there in manifest.libraries.items():
            here = stage.libraries_now.get(library)
            if here != there and library not in _warned:
                _warned.add(library)
                event = OtherLibraries(stage.name, manifest.key, library, str(here), there)
                if on_event is ignore:
                    log.warning("%s", event)
                on_event(event)


def run_stage(
    store: Store,
    name: str,
    params: BaseModel,
    on_event: OnEvent = ignore,
    should_stop: Callable[[], bool] = lambda: False,
    hints: Mapping[str, Any] | None = None,
    launch: Launch | None = None,
    **inputs: Any,
) -> ArtifactRef:
    """The stored artifact of stage `name` on these inputs and parameters, built now if it is not there
    (`hints`, `launch`: see `Build`)."""
    stage = STAGES[name]
    key = stage.key(inputs, params)
    keyed, digests = keyed_params(params), stage.digests(inputs)

    def build(folder: Path) -> Summary:
        explain_miss(store, stage, keyed, digests, on_event)
        summary = stage.build(
            Build(folder, store, name, key, on_event, should_stop, hints or {}, launch), **inputs, params=params
        )
        if not isinstance(summary, stage.summary):
            raise TypeError(f"stage {name} built a {type(summary).__name__}, not a {stage.summary.__name__}")
        return summary

    ref = store.materialize(
        stage=name,
        key=key,
        params=keyed,
        inputs=digests,
        code=stage.fingerprint,
        libraries=stage.libraries_now,
        build=build,
    )
    # A resumable build's checkpoints are of no use once its artifact is published.
    shutil.rmtree(store.work_folder(name, key), ignore_errors=True)
    return ref

"""How each stage's artifact is built from its inputs: the context a build runs in (`Build`), and one function
per stage that reads its inputs from the store, runs its pure work from `tasks/` and writes its artifact kind.
The registry (`artifacts/stages.py`) names these functions and keys the code behind them. No Prefect.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from artifacts import batches as batches_kind
from artifacts import evaluation as evaluation_kind
from artifacts import indices as indices_kind
from artifacts import text as text_kind
from artifacts import vocab as vocab_kind
from artifacts.model import TrainSummary
from artifacts.store import ArtifactRef, Store, StoreError
from artifacts.text_counts import COMPILED_MIN_BYTES, compiled_pays, count_text
from tasks.batches import BatchesParams, check_fits, epochs_size, plan_shards, split_validation, stored_batches
from tasks.clean import CleanedUtf8, CleanError, CleanParams, clean_stream
from tasks.encode import EncodeParams, encode_stream
from tasks.errors import Interrupted, ParameterError
from tasks.evaluate import EvaluateParams, check_resolved, cut, evaluate, evaluated_range, to_indices
from tasks.ingest import IngestParams, expected_bytes, ingest_utf8
from tasks.sources import Fetched
from tasks.text_reader import TextReader
from tasks.train.job import HeldOut, TrainJob, TrainResult
from tasks.train.params import TrainParams
from tasks.vocab import VocabParams, vocab_from_counts

log = logging.getLogger("charflow.builds")

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


def stoppable(chunks: Iterable[Any], build: Build) -> Iterator[Any]:
    """A stage's stream of chunks, stopped between two of them when a stop is asked (the first Ctrl-C): nothing
    is published, and the same command starts the stage again."""
    for chunk in chunks:
        if build.should_stop():
            raise Interrupted(f"stopped in the {build.stage} stage; nothing was published: run the same command again")
        yield chunk


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
    chars = text_kind.write_text_utf8(build.folder, stoppable(ingest_utf8(source, params, members), build), metadata)
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
    cleaned = clean_stream(text_reader(text), params, build.should_stop)
    metadata = {"stage": build.stage, "input": text.key}
    if isinstance(cleaned, CleanedUtf8):
        chars = text_kind.write_text_utf8(build.folder, stoppable(cleaned.chunks, build), metadata)
    else:
        chars = text_kind.write_text(build.folder, stoppable(cleaned.chunks, build), metadata)
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
    chunks = stoppable(encode_stream(text_reader(text), vocab_kind.read_vocab(vocab.path)), build)
    rows = indices_kind.write_indices(build.folder, chunks, {"stage": build.stage, "text_key": text.key, **source})
    return indices_kind.EncodeSummary(rows=rows, **source)


def build_batches(build: Build, indices: ArtifactRef, params: BatchesParams) -> batches_kind.BatchesSummary:
    """The training token stream (4 bytes a token, whatever the epochs); materialized, every batch's rows too."""
    encoded = indices_kind.EncodeSummary.of(indices)
    train_end = split_validation(encoded.rows, params.val_fraction)
    check_fits(train_end, params)
    rows = epochs_size(train_end, params, params.stored_epochs)[1]
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
        rows=rows,
        tokens=rows * params.num_steps,
        shards=[],
    )
    if not params.materialize:
        return summary
    # Materialized, every epoch's rows are written out anyway: their counts are listed, to find a batch's shard.
    per_epoch, plans = plan_shards(train_end, params)
    shards = [batches_kind.Shard(file=batches_kind.shard_file(n), **plan) for n, plan in enumerate(plans)]
    summary = summary.model_copy(update={"shards": shards, "batches_per_epoch": per_epoch})
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


def build_evaluate(
    build: Build, model: ArtifactRef, vocab: ArtifactRef, text: ArtifactRef, params: EvaluateParams
) -> evaluation_kind.EvaluationSummary:
    """The text read and mapped whole (unknown characters refused before any scoring), then scored."""
    check_resolved(params)
    trained = TrainSummary.of(model)
    if trained.vocab_key != vocab.key:
        raise vocab_kind.VocabMismatch(
            f"model {model.key[:12]} was trained with vocabulary {trained.vocab_key[:12]}, not {vocab.key[:12]}"
        )
    val_fraction = 0.0
    if params.split == "val":
        batches = build.store.lookup("batches", trained.batches_key)
        if batches is None:
            raise StoreError(
                f"the batches artifact {trained.batches_key[:12]} behind model {model.key[:12]} is missing or damaged, "
                "and its validation split is needed for --split val; run the batches command again"
            )
        val_fraction = batches_kind.BatchesSummary.of(batches).spec.val_fraction
    start, end = evaluated_range(text_kind.TextSummary.of(text).chars, params, val_fraction)
    words = vocab_kind.read_vocab(vocab.path)
    mapped = to_indices(cut(text_kind.iter_text(text.path), start, end), words, params.skip_unknown)
    scored = evaluate(evaluation_kind.load_weights(model, words, params), mapped, params)
    summary = evaluation_kind.EvaluationSummary(
        model_key=model.key,
        text_key=text.key,
        checkpoint=params.checkpoint,
        split=params.split,
        device=params.device,
        chars=mapped.chars,
        tokens=scored.tokens,
        unknown_mapped=mapped.unknown_mapped,
        unknown_skipped=mapped.unknown_skipped,
        nll=scored.nll,
        perplexity=scored.perplexity,
        bits_per_char=scored.bits_per_char,
    )
    evaluation_kind.write_evaluation(
        build.folder, summary, {"stage": build.stage, "model_key": model.key, "text_key": text.key}
    )
    return summary

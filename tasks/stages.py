"""Each stage as a cached, versioned artifact: key it, look it up, or build and publish it. No Prefect here."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from artifacts import schemas
from artifacts.fingerprint import code_fingerprint
from artifacts.keys import canonical, content_key, library_versions
from artifacts.store import ArtifactRef, Store
from tasks.batch_reader import BatchReader
from tasks.batches import BatchesParams, plan_shards, split_validation, stored_batches
from tasks.clean import CleanParams, ascii_translation, clean_chunks, clean_utf8
from tasks.encode import decode, encode, encode_chunks
from tasks.ingest import Fetched, IngestParams, ingest, read_members
from tasks.plot import frequency_chart, perplexity_curve
from tasks.progress import Progress
from tasks.train import TrainParams, train
from tasks.vocab import Vocab, VocabParams, build_vocab

log = logging.getLogger("charflow.stages")

WEIGHTS_FILE = "weights.pt"
TRAINING_STATE_FILE = "training_state.pt"
CURVE_FILE = "perplexity.png"
FREQUENCY_FILE = "frequency.png"


class EncodeParams(BaseModel):
    """Encoding has no knobs yet; a model all the same, so every stage is keyed alike."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# The code behind each stage's bytes: its module and the writers with what they import, and its own
# function here (with the shared helpers), so that editing one stage's glue re-keys that stage alone.
_SHARED = ("artifacts.schemas", "tasks.stages:_materialize", "tasks.stages:input_digests")
STAGE_CODE: dict[str, tuple[str, ...]] = {
    "ingest": ("tasks.ingest", "tasks.stages:ingest_stage", *_SHARED),
    "clean": ("tasks.clean", "tasks.stages:clean_stage", *_SHARED),
    "vocab": ("tasks.vocab", "tasks.plot", "tasks.stages:vocab_stage", *_SHARED),
    "encode": ("tasks.encode", "tasks.stages:encode_stage", "tasks.stages:load_vocab", *_SHARED),
    "batches": ("tasks.batches", "tasks.stages:batches_stage", *_SHARED),
    "train": (
        "tasks.train",
        "tasks.batch_reader",
        "tasks.plot",
        "tasks.stages:train_stage",
        "tasks.stages:load_vocab",
        *_SHARED,
    ),
}


def input_digests(inputs: Mapping[str, Any]) -> dict[str, str]:
    """An input artifact counts by its key, a source by its bytes' digest."""
    digests = {}
    for name, value in inputs.items():
        if isinstance(value, ArtifactRef):
            digests[name] = value.key
        elif isinstance(value, Fetched):
            digests[name] = value.sha256
    return digests


def stage_key(stage: str, inputs: Mapping[str, Any]) -> str:
    """The content key of `stage` applied to `inputs` (its artifacts, source and `params`)."""
    return content_key(stage, inputs.get("params"), input_digests(inputs), code_fingerprint(STAGE_CODE[stage]))


def _materialize(
    store: Store, stage: str, inputs: Mapping[str, Any], build: Callable[[Path], Mapping[str, Any]]
) -> ArtifactRef:
    return store.materialize(
        stage=stage,
        key=stage_key(stage, inputs),
        params=canonical(inputs.get("params")) or {},
        inputs=input_digests(inputs),
        code=code_fingerprint(STAGE_CODE[stage]),
        libraries=library_versions(),
        build=build,
    )


def ingest_stage(store: Store, fetched: Fetched, params: IngestParams) -> ArtifactRef:
    def build(folder: Path) -> dict[str, Any]:
        members = read_members(fetched, params)
        text = ingest(members, params)
        summary = {
            "chars": len(text),
            "source": fetched.source,
            "sha256": fetched.sha256,
            "size": fetched.size,
            "members": [{"name": name, "bytes": len(data)} for name, data in members],
        }
        schemas.write_text(folder, [text], {"stage": "ingest", **summary})
        return summary

    return _materialize(store, "ingest", {"fetched": fetched, "params": params}, build)


def clean_stage(store: Store, text: ArtifactRef, params: CleanParams) -> ArtifactRef:
    def build(folder: Path) -> dict[str, Any]:
        metadata = {"stage": "clean", "input": text.key}
        if (table := ascii_translation(params)) is not None:
            cleaned = clean_utf8(schemas.iter_text_utf8(Path(text.path)), table, params.max_chars)
            return {"chars": schemas.write_text_utf8(folder, cleaned, metadata)}
        cleaned = clean_chunks(schemas.iter_text(Path(text.path)), params)
        return {"chars": schemas.write_text(folder, cleaned, metadata)}

    return _materialize(store, "clean", {"text": text, "params": params}, build)


def vocab_stage(store: Store, text: ArtifactRef, params: VocabParams) -> ArtifactRef:
    def build(folder: Path) -> dict[str, Any]:
        vocab = build_vocab(schemas.iter_text(Path(text.path)), params)
        policy = canonical(params)
        schemas.write_vocab(folder, vocab.tokens, vocab.counts, vocab.reserved, {"stage": "vocab", "policy": policy})
        frequency_chart(vocab.tokens, vocab.counts.tolist(), folder / FREQUENCY_FILE)
        return {"size": len(vocab), "reserved": vocab.reserved, "policy": policy}

    return _materialize(store, "vocab", {"text": text, "params": params}, build)


def encode_stage(store: Store, text: ArtifactRef, vocab: ArtifactRef, params: EncodeParams) -> ArtifactRef:
    def build(folder: Path) -> dict[str, Any]:
        source = {"vocab_key": vocab.key, "vocab_size": vocab.summary.get("size")}
        chunks = encode_chunks(schemas.iter_text(Path(text.path)), load_vocab(vocab))
        rows = schemas.write_indices(folder, chunks, {"stage": "encode", "text_key": text.key, **source})
        return {"rows": rows, **source}

    return _materialize(store, "encode", {"text": text, "vocab": vocab, "params": params}, build)


def batches_stage(store: Store, indices: ArtifactRef, params: BatchesParams) -> ArtifactRef:
    def build(folder: Path) -> dict[str, Any]:
        everything = schemas.read_indices(Path(indices.path))  # (n,) int32
        train_end = split_validation(len(everything), params.val_fraction)
        corpus = everything[:train_end]  # (n_train,)
        per_epoch, shards = plan_shards(len(corpus), params)
        rows = sum(shard["rows"] for shard in shards)
        summary = {
            "spec": canonical(params),
            "vocab_key": indices.summary.get("vocab_key"),
            "vocab_size": indices.summary.get("vocab_size"),
            "indices_key": indices.key,
            "train_indices": train_end,
            "val_indices": len(everything) - train_end,
            "epochs": params.epochs,
            "epochs_stored": params.stored_epochs,
            "same_every_epoch": params.same_every_epoch,
            "batches_per_epoch": per_epoch,
            "rows": rows,
            "tokens": rows * params.num_steps,
        }
        batches = stored_batches(corpus, params)
        progress = Progress(len(shards), "writing batch shards", log.info)
        for number, shard in enumerate(shards):
            shard["file"] = schemas.batches_file(number)
            metadata = {"stage": "batches", **summary, "shard": shard}
            writer = schemas.BatchShardWriter(folder / shard["file"], params.num_steps, metadata)
            try:
                for _ in range(shard["batches"]):
                    writer.write(*next(batches))
            finally:
                writer.close()
            progress.advance()
        progress.close()
        return {**summary, "shards": shards}

    return _materialize(store, "batches", {"indices": indices, "params": params}, build)


class VocabMismatch(ValueError):
    """Artifacts made with different vocabularies."""


def train_stage(store: Store, batches: ArtifactRef, vocab: ArtifactRef, params: TrainParams) -> ArtifactRef:
    if batches.summary.get("vocab_key") != vocab.key:
        raise VocabMismatch(
            f"batches {batches.key[:12]} were encoded with vocabulary {str(batches.summary.get('vocab_key'))[:12]}, "
            f"not {vocab.key[:12]}; train on batches and vocabulary from the same prepare run"
        )
    inputs = {"batches": batches, "vocab": vocab, "params": params}
    # Checkpoints live outside the staging folder, under the key, so a killed run resumes.
    work = store.root / ".work" / f"train-{stage_key('train', inputs)[:32]}"

    def build(folder: Path) -> dict[str, Any]:
        import torch

        work.mkdir(parents=True, exist_ok=True)
        reader = BatchReader(batches.path, expected_vocab_key=vocab.key)
        vocabulary = load_vocab(vocab)
        held_out = None
        if batches.summary.get("val_indices"):
            indices = schemas.read_indices(Path(store.find("encode", batches.summary["indices_key"]).path))
            held_out = indices[batches.summary["train_indices"] :]
        model, optimizer, state = train(
            reader.epoch_batches,
            epochs=reader.epochs,
            carry_state=reader.sampler == "consecutive",
            vocab_size=len(vocabulary),
            encode=lambda text: encode(text, vocabulary).tolist(),
            decode=lambda ids: decode(np.asarray(ids), vocabulary),
            params=params,
            checkpoint=work / "checkpoint.pt",
            log=log.info,
            validation=held_out,
        )
        torch.save(model.state_dict(), folder / WEIGHTS_FILE)
        torch.save(
            {"optimizer": optimizer.state_dict(), "epoch": state.epoch, "rng": torch.get_rng_state()},
            folder / TRAINING_STATE_FILE,
        )
        meta = {"stage": "train", "vocab_key": vocab.key, "batches_key": batches.key}
        schemas.write_rows(folder / schemas.METRICS_FILE, schemas.METRICS_SCHEMA, state.metrics, meta)
        schemas.write_rows(folder / schemas.SAMPLES_FILE, schemas.SAMPLES_SCHEMA, state.samples, meta)
        perplexity_curve(state.metrics, folder / CURVE_FILE, title=f"{params.model}, {reader.sampler} sampling")
        last = state.metrics[-1]
        return {
            "vocab_key": vocab.key,
            "vocab_size": len(vocabulary),
            "batches_key": batches.key,
            "sampler": reader.sampler,
            "epochs": state.epoch,
            "perplexity": last["perplexity"],
            "val_perplexity": last["val_perplexity"],
            "samples": state.samples[-len(params.prefixes) :],
        }

    ref = _materialize(store, "train", inputs, build)
    shutil.rmtree(work, ignore_errors=True)
    return ref


def prepare_stages(
    store: Store,
    fetched: Fetched,
    ingest_params: IngestParams = IngestParams(),
    clean_params: CleanParams = CleanParams(),
    vocab_params: VocabParams = VocabParams(),
) -> dict[str, ArtifactRef]:
    """ingest -> clean -> vocab -> encode without Prefect (for machines without it, benchmarks and tests)."""
    text = clean_stage(store, ingest_stage(store, fetched, ingest_params), clean_params)
    vocab = vocab_stage(store, text, vocab_params)
    return {"clean": text, "vocab": vocab, "encode": encode_stage(store, text, vocab, EncodeParams())}


def load_vocab(ref: ArtifactRef) -> Vocab:
    table = schemas.read_vocab_table(Path(ref.path))
    reserved = int(np.count_nonzero(table.column("reserved").to_numpy()))
    return Vocab(
        tokens=table.column("token").to_pylist(),
        counts=table.column("count").to_numpy(),
        reserved=reserved,
    )

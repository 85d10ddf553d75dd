"""The evaluation artifact (evaluate): a model's perplexity and bits per character on a text.

evaluation.parquet   one row: model_key, text_key: string, checkpoint, split, device: string, chars, tokens,
                     unknown_mapped, unknown_skipped: int64, nll, perplexity, bits_per_char: double
                     (the same as the manifest's summary; every evaluation in the store is one query away:
                     `select * from 'store/evaluate/*/evaluation.parquet'`)

torch is imported inside the build: the summary and file names are read without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from artifacts.batches import BatchesSummary
from artifacts.builds import Build
from artifacts.manifest import Summary
from artifacts.model import TrainSummary, load_model
from artifacts.parquet import write_rows
from artifacts.store import ArtifactRef, StoreError
from artifacts.text import TextSummary, iter_text
from artifacts.vocab import VocabMismatch, read_vocab
from tasks.evaluate import EvaluateParams, cut, evaluate, evaluated_range, to_indices
from tasks.vocab import Vocab

if TYPE_CHECKING:
    from tasks.train.model import CharModel

EVALUATION_FILE = "evaluation.parquet"
EVALUATION_SCHEMA = pa.schema(
    [
        ("model_key", pa.string()),
        ("text_key", pa.string()),
        ("checkpoint", pa.string()),
        ("split", pa.string()),
        ("device", pa.string()),
        ("chars", pa.int64()),
        ("tokens", pa.int64()),
        ("unknown_mapped", pa.int64()),
        ("unknown_skipped", pa.int64()),
        ("nll", pa.float64()),
        ("perplexity", pa.float64()),
        ("bits_per_char", pa.float64()),
    ]
)
TABLE_OPTIONS: dict[str, Any] = {"compression": "zstd"}


class EvaluationSummary(Summary):
    model_key: str
    text_key: str  # the clean artifact evaluated
    checkpoint: str  # "best" or "last": the weights evaluated
    split: str  # "all" or "val"
    device: str
    chars: int  # the text's characters evaluated (after --max-chars and --split), unknown ones included
    tokens: int  # characters predicted and scored
    unknown_mapped: int  # characters the vocabulary lacks, scored as <unk>
    unknown_skipped: int  # characters the vocabulary lacks, dropped (--skip-unknown)
    nll: float  # nats summed over the tokens
    perplexity: float  # exp(nll / tokens)
    bits_per_char: float  # nll / tokens / ln 2


def write_evaluation(folder: Path, summary: EvaluationSummary, metadata: dict[str, Any]) -> None:
    write_rows(folder / EVALUATION_FILE, EVALUATION_SCHEMA, [summary.model_dump()], metadata, TABLE_OPTIONS)


def load_weights(model: ArtifactRef, vocab: Vocab, params: EvaluateParams) -> CharModel:
    """The model's weights named by `params.checkpoint` (resolved: one the model keeps), on `params.device`."""
    # Merge point: once the model artifact keeps its best weights beside the last, pass
    # checkpoint=params.checkpoint here.
    net, _ = load_model(model.path, vocab, params.device)
    return net


def build_evaluate(
    build: Build, model: ArtifactRef, vocab: ArtifactRef, text: ArtifactRef, params: EvaluateParams
) -> EvaluationSummary:
    """The text read and mapped whole (unknown characters refused before any scoring), then scored."""
    if params.checkpoint is None or params.streams is None or params.num_steps is None or params.device == "auto":
        raise ValueError("resolve the evaluation's parameters (tasks.evaluate.resolve) before keying an evaluate stage")
    trained = TrainSummary.of(model)
    if trained.vocab_key != vocab.key:
        raise VocabMismatch(
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
        val_fraction = BatchesSummary.of(batches).spec.val_fraction
    start, end = evaluated_range(TextSummary.of(text).chars, params, val_fraction)
    words = read_vocab(vocab.path)
    mapped = to_indices(cut(iter_text(text.path), start, end), words, params.skip_unknown)
    scored = evaluate(load_weights(model, words, params), mapped, params)
    summary = EvaluationSummary(
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
    write_evaluation(build.folder, summary, {"stage": build.stage, "model_key": model.key, "text_key": text.key})
    return summary

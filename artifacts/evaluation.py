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

from artifacts.manifest import Summary
from artifacts.model import load_model
from artifacts.parquet import write_rows
from artifacts.store import ArtifactRef
from tasks.evaluate import EvaluateParams
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
    net, _ = load_model(model.path, vocab, params.device, checkpoint=params.checkpoint)
    return net

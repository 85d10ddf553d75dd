"""The model artifact (train): the weights, the training state, metrics, samples and the perplexity curve.

weights.pt          a plain state dict: torch.load(path, weights_only=True); the last epoch's
best_weights.pt     the same, of the epoch with the lowest validation perplexity (only with validation)
training_state.pt   the optimizer state, the epoch and the RNG state
metrics.parquet     epoch: int32, perplexity: double, val_perplexity: double (null without a split, and on
                    the epochs --eval-every skips),
                    tokens_per_s: double, grad_norm: double, seconds: double
samples.parquet     epoch: int32, prefix: string, text: string
perplexity.png      training (and validation) perplexity per epoch

torch is imported inside the functions that need it: the summary and file names are read without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from pydantic import model_validator

from artifacts.manifest import Summary, read_manifest
from artifacts.parquet import write_rows
from tasks.errors import ParameterError

if TYPE_CHECKING:
    from tasks.train.loop import Trained
    from tasks.train.model import CharModel
    from tasks.vocab import Vocab

WEIGHTS_FILE = "weights.pt"
BEST_WEIGHTS_FILE = "best_weights.pt"
TRAINING_STATE_FILE = "training_state.pt"
METRICS_FILE = "metrics.parquet"
SAMPLES_FILE = "samples.parquet"
CURVE_FILE = "perplexity.png"
METRICS_SCHEMA = pa.schema(
    [
        ("epoch", pa.int32()),
        ("perplexity", pa.float64()),
        ("val_perplexity", pa.float64()),
        ("tokens_per_s", pa.float64()),
        ("grad_norm", pa.float64()),
        ("seconds", pa.float64()),
    ]
)
SAMPLES_SCHEMA = pa.schema([("epoch", pa.int32()), ("prefix", pa.string()), ("text", pa.string())])
TABLE_OPTIONS: dict[str, Any] = {"compression": "zstd"}


class Sample(Summary):
    epoch: int
    prefix: str
    text: str


class TrainSummary(Summary):
    vocab_key: str
    vocab_size: int
    batches_key: str
    sampler: str
    epochs: int
    perplexity: float
    val_perplexity: float | None
    samples: list[Sample]  # the last epoch's, one per prefix
    # Defaults: manifests written before validation kept a best checkpoint still read.
    best_epoch: int | None = None  # the epoch of the lowest validation perplexity; None without validation
    best_val_perplexity: float | None = None
    # The epoch --patience stopped training at (`epochs` too); None (shown as nothing): it ran every epoch.
    stopped_at: int | None = None
    checkpoint: Literal["best", "last"] = "last"  # the weights generate and evaluate load unless told

    @model_validator(mode="before")
    @classmethod
    def _default_checkpoint(cls, data: Any) -> Any:
        """The best checkpoint where there was validation, else the last."""
        if isinstance(data, dict) and "checkpoint" not in data:
            return {**data, "checkpoint": "best" if data.get("best_epoch") is not None else "last"}
        return data


class NoBestCheckpoint(ParameterError):
    """The best checkpoint asked of a model trained without validation."""


def write_model(folder: Path, trained: Trained, metadata: dict[str, Any], title: str) -> None:
    import torch

    model, optimizer, state = trained
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)
    if state.best_weights is not None:
        torch.save(state.best_weights, folder / BEST_WEIGHTS_FILE)
    torch.save(
        {"optimizer": optimizer.state_dict(), "epoch": state.epoch, "rng": torch.get_rng_state()},
        folder / TRAINING_STATE_FILE,
    )
    write_rows(folder / METRICS_FILE, METRICS_SCHEMA, state.metrics, metadata, TABLE_OPTIONS)
    write_rows(folder / SAMPLES_FILE, SAMPLES_SCHEMA, state.samples, metadata, TABLE_OPTIONS)
    perplexity_curve(state.metrics, folder / CURVE_FILE, title)


def load_model(
    folder: Path, vocab: Vocab, device: str = "auto", checkpoint: str | None = None
) -> tuple[CharModel, Any]:
    """The trained model in eval mode on `device` ("auto": CUDA where present), and the torch device.

    `checkpoint`: "best" (the lowest validation perplexity) or "last" (the last epoch's); None, the summary's
    default (best where there was validation)."""
    import torch

    from tasks.train.model import build_model, saved_context
    from tasks.train.params import TrainParams, resolve_device

    manifest = read_manifest(folder)
    file = weights_file(TrainSummary.of(manifest), checkpoint, folder.name)
    params = resolve_device(TrainParams.model_validate({**manifest.params, "device": device}))
    weights = torch.load(folder / file, map_location=params.device, weights_only=True)
    model = build_model(len(vocab), params, context=saved_context(weights))  # the Transformer's: its positions
    model.load_state_dict(weights)
    return model.to(params.device).eval(), torch.device(params.device)


def weights_file(summary: TrainSummary, checkpoint: str | None, name: str) -> str:
    """The weights file of `checkpoint` ("best", "last", or None: the summary's default)."""
    chosen = checkpoint or summary.checkpoint
    if chosen == "best" and summary.best_epoch is None:
        raise NoBestCheckpoint(
            f"model {name[:12]} was trained without validation, so it has no best checkpoint; use --checkpoint "
            "last, or train with --val-fraction"
        )
    if chosen not in ("best", "last"):
        raise ParameterError(f"checkpoint must be 'best' or 'last', got {chosen!r}")
    return BEST_WEIGHTS_FILE if chosen == "best" else WEIGHTS_FILE


def perplexity_curve(metrics: list[dict[str, Any]], path: Path, title: str) -> None:
    """Training perplexity per epoch, log scale (it falls from hundreds to about one), and validation's."""
    from artifacts.charts import new_figure, save_png

    fig, ax = new_figure(6, 4)
    epochs = [row["epoch"] for row in metrics]
    ax.plot(epochs, [row["perplexity"] for row in metrics], label="training")
    validated = [row for row in metrics if row.get("val_perplexity") is not None]  # --eval-every skips some
    if validated:
        ax.plot([row["epoch"] for row in validated], [row["val_perplexity"] for row in validated], label="validation")
    ax.set(xlabel="epoch", ylabel="perplexity", yscale="log", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_png(fig, path)

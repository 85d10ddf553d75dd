"""The model artifact (train): the weights, the training state, metrics, samples and the perplexity curve.

weights.pt          a plain state dict: torch.load(path, weights_only=True)
training_state.pt   the optimizer state, the epoch and the RNG state
metrics.parquet     epoch: int32, perplexity: double, val_perplexity: double (null without a split),
                    tokens_per_s: double, grad_norm: double, seconds: double
samples.parquet     epoch: int32, prefix: string, text: string
perplexity.png      training (and validation) perplexity per epoch

torch is imported inside the functions that need it: the summary and file names are read without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from artifacts.manifest import Summary, read_manifest
from artifacts.parquet import write_rows

if TYPE_CHECKING:
    from tasks.train.loop import Trained
    from tasks.train.model import CharModel
    from tasks.vocab import Vocab

WEIGHTS_FILE = "weights.pt"
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


def write_model(folder: Path, trained: Trained, metadata: dict[str, Any], title: str) -> None:
    import torch

    model, optimizer, state = trained
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)
    torch.save(
        {"optimizer": optimizer.state_dict(), "epoch": state.epoch, "rng": torch.get_rng_state()},
        folder / TRAINING_STATE_FILE,
    )
    write_rows(folder / METRICS_FILE, METRICS_SCHEMA, state.metrics, metadata, TABLE_OPTIONS)
    write_rows(folder / SAMPLES_FILE, SAMPLES_SCHEMA, state.samples, metadata, TABLE_OPTIONS)
    perplexity_curve(state.metrics, folder / CURVE_FILE, title)


def load_model(folder: Path, vocab: Vocab, device: str = "auto") -> tuple[CharModel, Any]:
    """The trained model in eval mode on `device` ("auto": CUDA where present), and the torch device."""
    import torch

    from tasks.train.model import build_model, saved_context
    from tasks.train.params import TrainParams, resolve_device

    params = resolve_device(TrainParams.model_validate({**read_manifest(folder).params, "device": device}))
    weights = torch.load(folder / WEIGHTS_FILE, map_location=params.device, weights_only=True)
    model = build_model(len(vocab), params, context=saved_context(weights))  # the Transformer's: its positions
    model.load_state_dict(weights)
    return model.to(params.device).eval(), torch.device(params.device)


def perplexity_curve(metrics: list[dict[str, Any]], path: Path, title: str) -> None:
    """Training perplexity per epoch, log scale (it falls from hundreds to about one), and validation's."""
    from artifacts.charts import new_figure, save_png

    fig, ax = new_figure(6, 4)
    epochs = [row["epoch"] for row in metrics]
    ax.plot(epochs, [row["perplexity"] for row in metrics], label="training")
    if any(row.get("val_perplexity") is not None for row in metrics):
        ax.plot(epochs, [row.get("val_perplexity") for row in metrics], label="validation")
    ax.set(xlabel="epoch", ylabel="perplexity", yscale="log", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_png(fig, path)

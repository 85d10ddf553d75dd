"""The book's three runs over several seeds: perplexity at epochs 50..250 (mean ± std) and the last samples.

    .venv/bin/python -m benchmarks.fidelity_seeds [--seeds 0 1 2] [--corpus PATH]

Each run goes through the real pipeline (prepare, batches, train) in a temporary store, without Prefect, on
the CPU by default.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from artifacts.model import METRICS_FILE, TrainSummary
from benchmarks.train_throughput import DEFAULT_CORPUS
from flows.pipeline import PrepareParams, plain_runner, train
from tasks.batches import BatchesParams
from tasks.fetch import resolve_source
from tasks.train.params import TrainParams

RUNS = {
    "scratch RNN, random": ("random", {}),
    "scratch RNN, consecutive": ("consecutive", {}),
    "nn.RNN, Adam 1e-3, consecutive": ("consecutive", {"model": "rnn", "optimizer": "adam", "lr": 1e-3}),
}


def perplexities(root: Path, corpus: Path, sampler: str, seed: int = 0, **training) -> tuple[list[float], list[str]]:
    """The book's settings on the lyrics, but for the sampler, the seed and `training`: every epoch's
    perplexity and the last samples."""
    made = train(
        plain_runner(root),
        resolve_source(str(corpus), "jaychou"),
        PrepareParams(),
        BatchesParams(sampler=sampler, seed=seed),
        TrainParams(seed=seed, **training),
    )
    model = made.stages["train"]
    curve = pq.read_table(model.file(METRICS_FILE)).column("perplexity").to_pylist()
    return curve, [s.text for s in TrainSummary.of(model).samples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="charflow-fidelity-"))
    print("| run | epoch 50 | 100 | 150 | 200 | 250 |\n| --- | --- | --- | --- | --- | --- |")
    samples = {}
    for label, (sampler, model) in RUNS.items():
        curves = []
        for seed in args.seeds:
            curve, texts = perplexities(root, args.corpus, sampler, seed, device=args.device, **model)
            curves.append(curve)
            samples[f"{label}, seed {seed}"] = texts
        cells = []
        for epoch in (50, 100, 150, 200, 250):
            values = [curve[epoch - 1] for curve in curves]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    for label, texts in samples.items():
        print(f"- {label}: " + " / ".join(f"`{t}`" for t in texts))


if __name__ == "__main__":
    main()

"""The book's three runs over several seeds: perplexity at epochs 50..250 (mean ± std) and the last samples.

    .venv/bin/python -m benchmarks.fidelity_seeds [--seeds 0 1 2] [--corpus PATH]

Each run goes through the real stages (prepare, batches, train) in a temporary store, on the CPU by default.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from artifacts import schemas
from artifacts.store import Store
from benchmarks.train_throughput import DEFAULT_CORPUS
from tasks.batches import BatchesParams
from tasks.ingest import fetch
from tasks.stages import (
    batches_stage,
    prepare_stages,
    train_stage,
)
from tasks.train import TrainParams

RUNS = {
    "scratch RNN, random": ("random", {}),
    "scratch RNN, consecutive": ("consecutive", {}),
    "nn.RNN, Adam 1e-3, consecutive": ("consecutive", {"model": "rnn", "optimizer": "adam", "lr": 1e-3}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    store = Store(tempfile.mkdtemp(prefix="charflow-fidelity-"))
    refs = prepare_stages(store, fetch(str(args.corpus), store.root / "downloads"))
    vocab, indices = refs["vocab"], refs["encode"]
    print("| run | epoch 50 | 100 | 150 | 200 | 250 |\n| --- | --- | --- | --- | --- | --- |")
    samples = {}
    for label, (sampler, model) in RUNS.items():
        curves = []
        for seed in args.seeds:
            batches = batches_stage(store, indices, BatchesParams(sampler=sampler, seed=seed))
            ref = train_stage(store, batches, vocab, TrainParams(seed=seed, device=args.device, **model))
            curves.append(pq.read_table(f"{ref.path}/{schemas.METRICS_FILE}").column("perplexity").to_pylist())
            samples[f"{label}, seed {seed}"] = [s["text"] for s in ref.summary["samples"]]
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

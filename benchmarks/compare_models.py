"""The five models at equal training time: validation perplexity and bits per character on the lyrics' tail.

    .venv/bin/python -m benchmarks.compare_models [--budget 120] [--models scratch rnn gru lstm transformer]

The whole lyrics (`--max-chars none`: every character, cleaned as the book cleans), the last 10 % held out,
random sampling (the Transformer cannot carry a state), batch 32 and 64 steps for every model. Each model
trains for about `--budget` seconds of this machine's time: one epoch measures its speed, then it trains from
scratch for as many epochs as fit the budget, validating every epoch; the best validation epoch is reported
with the last. Each model has its usual optimizer (the book's SGD for `scratch`, Adam for the torch.nn RNNs,
AdamW with warmup and cosine decay for the Transformer). Runs without Prefect, on the CPU by default.
"""

from __future__ import annotations

import argparse
import math
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.train_throughput import DEFAULT_CORPUS
from tasks.batches import SamplerSpec, iter_batches, split_validation
from tasks.clean import CleanParams, clean
from tasks.encode import encode
from tasks.train.loop import Validation, train
from tasks.train.params import TrainParams
from tasks.vocab import VocabParams, build_vocab

NUM_STEPS, BATCH = 64, 32
MODELS = {
    "scratch": {"model": "scratch"},  # the book's: SGD at lr 100, clipping at 0.01
    "rnn": {"model": "rnn", "optimizer": "adam", "lr": 2e-3, "clip": 1.0},
    "gru": {"model": "gru", "optimizer": "adam", "lr": 2e-3, "clip": 1.0},
    "lstm": {"model": "lstm", "optimizer": "adam", "lr": 2e-3, "clip": 1.0},
    "transformer": {
        "model": "transformer",
        "hidden": 192,
        "layers": 4,
        "heads": 4,
        "dropout": 0.1,
        "optimizer": "adamw",
        "weight_decay": 0.1,
        "lr": 1e-3,
        "clip": 1.0,
        "lr_schedule": "cosine",
        "warmup_steps": 100,
    },
}


CONSTANT = {"lr_schedule": "constant", "warmup_steps": 0}


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def run(name: str, corpus: np.ndarray, held_out: np.ndarray, vocab, budget: float, device: str) -> dict:
    spec = SamplerSpec(sampler="random", batch_size=BATCH, num_steps=NUM_STEPS)

    def epoch_batches(epoch: int):
        for x, y in iter_batches(corpus, spec, epoch):
            yield torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))

    params = TrainParams(device=device, prefixes=(), seed=0, **MODELS[name])
    validation = Validation(held_out, NUM_STEPS, BATCH)
    common = {"carry_state": False, "vocab": vocab, "validation": validation, "context": NUM_STEPS}
    # The probe's speed is the run's: a schedule changes the rate, not the work (and one epoch is shorter than
    # a warmup).
    probe = train(epoch_batches, epochs=1, params=params.model_copy(update=CONSTANT), **common)
    per_epoch = probe.state.metrics[0]["seconds"]
    epochs = max(1, int(budget // per_epoch))
    if params.warmup_steps:  # at most a tenth of the run
        params = params.model_copy(update={"warmup_steps": min(params.warmup_steps, epochs * probe.state.steps // 10)})
    started = time.perf_counter()
    trained = train(epoch_batches, epochs=epochs, params=params, **common)
    seconds = time.perf_counter() - started
    rows = trained.state.metrics
    best = min(rows, key=lambda row: row["val_perplexity"])
    tokens = sum(row["tokens_per_s"] * row["seconds"] for row in rows)
    return {
        "model": name,
        "parameters": parameters(trained.model),
        "epochs": epochs,
        "seconds": seconds,
        "tokens_per_s": tokens / sum(row["seconds"] for row in rows),
        "last": rows[-1]["val_perplexity"],
        "best": best["val_perplexity"],
        "best_epoch": best["epoch"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=120.0, help="seconds of training per model")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with zipfile.ZipFile(args.corpus) as archive:
        text = clean(archive.read("jaychou_lyrics.txt").decode("utf-8"), CleanParams(max_chars=None))
    vocab = build_vocab(text, VocabParams())
    indices = encode(text, vocab)
    train_part = split_validation(len(indices), 0.1)
    corpus, held_out = indices[:train_part], indices[train_part:]
    print(
        f"lyrics: {len(text):,} characters, vocabulary {len(vocab):,}, {len(held_out):,} held out; "
        f"{args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}; budget {args.budget:.0f} s"
    )
    print("| model | parameters | epochs | tokens/s | val perplexity (last) | best (epoch) | bits/char (best) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models:
        row = run(name, corpus, held_out, vocab, args.budget, args.device)
        print(
            f"| `{name}` | {row['parameters']:,} | {row['epochs']} ({row['seconds']:.0f} s) | "
            f"{row['tokens_per_s']:,.0f} | {row['last']:.2f} | {row['best']:.2f} ({row['best_epoch']}) | "
            f"{math.log2(row['best']):.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""Checkpoints: everything a run needs to continue where it stopped, loadable without pickle."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass
class TrainState:
    """Epochs completed, with every metrics row and sample so far; the optimizer steps taken (the learning-rate
    schedule's clock); the best validation so far, its epoch and weights (a CPU copy), and the validations since
    it (early stopping's count)."""

    epoch: int = 0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    best_epoch: int | None = None
    best_val_perplexity: float | None = None
    best_weights: dict[str, torch.Tensor] | None = None
    stale: int = 0  # validations since the best one
    stopped_early: bool = False


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: TrainState) -> None:
    """Atomically: a kill mid-write leaves the previous checkpoint."""
    partial = path.with_suffix(".partial")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": state.epoch,
            "metrics": state.metrics,
            "samples": state.samples,
            "steps": state.steps,
            "best_epoch": state.best_epoch,
            "best_val_perplexity": state.best_val_perplexity,
            "best_weights": state.best_weights,
            "stale": state.stale,
            "stopped_early": state.stopped_early,
            "rng": torch.get_rng_state(),
            # Dropout on a GPU draws from CUDA's generators: a resumed run continues their streams too.
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        },
        partial,
    )
    os.replace(partial, path)


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> TrainState:
    data = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(data["model"])
    optimizer.load_state_dict(data["optimizer"])
    torch.set_rng_state(data["rng"])
    if data.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(data["cuda_rng"])
    return TrainState(
        epoch=data["epoch"],
        metrics=data["metrics"],
        samples=data["samples"],
        # Checkpoints saved before these existed: no schedule, no validation kept.
        steps=data.get("steps", 0),
        best_epoch=data.get("best_epoch"),
        best_val_perplexity=data.get("best_val_perplexity"),
        best_weights=data.get("best_weights"),
        stale=data.get("stale", 0),
        stopped_early=data.get("stopped_early", False),
    )

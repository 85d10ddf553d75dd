"""The learning rate of every optimizer step: a linear warmup, then constant, cosine or step decay.

Pure arithmetic on the step and epoch numbers, so a resumed run continues the very same rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tasks.batches import SamplerSpec, epochs_size
from tasks.train.params import TrainParams

# Cosine decays to a tenth of the peak rate, nanoGPT's min_lr = lr / 10 (Chinchilla's choice), not to zero.
COSINE_FLOOR = 0.1


@dataclass(frozen=True)
class Schedule:
    """lr for `total_steps` optimizer steps: `warmup_steps` rising linearly to it, then the decay."""

    lr: float
    kind: str  # constant, cosine or step
    total_steps: int
    warmup_steps: int = 0
    decay: float = 1.0  # step: the factor every `step_epochs` epochs
    step_epochs: int = 1

    @classmethod
    def of(cls, params: TrainParams, total_steps: int) -> Schedule:
        return cls(
            lr=params.lr,
            kind=params.lr_schedule,
            total_steps=total_steps,
            warmup_steps=params.warmup_steps,
            decay=params.lr_decay,
            step_epochs=params.lr_step_epochs,
        )

    @property
    def constant(self) -> bool:
        """The rate never changes: the optimizer keeps the one it was made with (the book's)."""
        return self.kind == "constant" and not self.warmup_steps

    def lr_at(self, step: int, epoch: int) -> float:
        """The rate of optimizer step `step` (0-based, counted over the whole run), in 0-based `epoch`."""
        if step < self.warmup_steps:
            # (step + 1) / warmup: the first step already moves, the last warmup step is at the full rate.
            return self.lr * (step + 1) / self.warmup_steps
        if self.kind == "cosine":
            progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)  # in [0, 1)
            floor = self.lr * COSINE_FLOOR
            return floor + 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))) * (self.lr - floor)
        if self.kind == "step":
            return self.lr * self.decay ** (epoch // self.step_epochs)
        return self.lr


def total_steps(train_indices: int, spec: SamplerSpec) -> int:
    """Optimizer steps in a whole run on `train_indices` indices: every epoch's batches (each rank of a DDP run
    takes its rows of every batch, so the same number)."""
    return epochs_size(train_indices, spec, spec.epochs)[0]

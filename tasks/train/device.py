""" "auto" resolved without importing torch where that is certain: no GPU driver device files, no GPU.

Apart from `tasks.train.params` on purpose: the training code imports that module, so it is part of the train
stage's key, and how a device is found does not change a model's bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tasks.train.params import TrainParams


def no_gpu_here() -> bool:
    """True where no CUDA (nor ROCm) device can exist: Linux without the drivers' device files."""
    dev = Path("/dev")
    return sys.platform == "linux" and not any(dev.glob("nvidia[0-9]*")) and not (dev / "kfd").exists()


def without_torch(params: TrainParams) -> TrainParams:
    """ "auto" made "cpu" where there is certainly no GPU (importing torch to ask costs a second); otherwise
    unchanged, for `resolve_device` to decide."""
    if params.device == "auto" and no_gpu_here():
        return params.model_copy(update={"device": "cpu"})
    return params

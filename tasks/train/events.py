"""What training reports as it goes: plain data, no torch, so that whoever shows it needs nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Resumed:
    epoch: int  # epochs already done
    checkpoint: Path


@dataclass(frozen=True)
class EpochEnd:
    epoch: int  # 1-based: epochs done
    epochs: int
    metrics: dict[str, Any]
    samples: list[dict[str, Any]]  # taken after this epoch; empty between prediction periods


Event = Resumed | EpochEnd

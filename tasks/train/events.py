"""What training reports as it goes: plain data, no torch, so that whoever shows it needs nothing heavy.

Each event names its kind, so that one adapter writes any of them as a JSON line and reads it back (the first
rank of a multi-process training relays its events to the launcher so).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter


@dataclass(frozen=True)
class Resumed:
    epoch: int  # epochs already done
    checkpoint: Path
    kind: Literal["resumed"] = "resumed"


@dataclass(frozen=True)
class EpochEnd:
    epoch: int  # 1-based: epochs done
    epochs: int
    metrics: dict[str, Any]
    samples: list[dict[str, Any]]  # taken after this epoch; empty between prediction periods
    kind: Literal["epoch_end"] = "epoch_end"


Event = Resumed | EpochEnd

# NaN stays NaN (an epoch too short to time has tokens_per_s NaN), where JSON's default would make it null.
_EVENTS: TypeAdapter[Event] = TypeAdapter(
    Annotated[Event, Field(discriminator="kind")], config=ConfigDict(ser_json_inf_nan="constants")
)


def event_json(event: Event) -> str:
    return _EVENTS.dump_json(event).decode()


def event_from_json(text: str | bytes) -> Event:
    return _EVENTS.validate_json(text)

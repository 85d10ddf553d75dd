"""The quality gate's rule: two models scored on the same characters, fairly when their vocabularies differ, and
whether the new one may take the alias. Pure arithmetic over arrays (the scoring itself is
`tasks.gate_scoring`); no torch, no store.

The fair comparison. The text's characters c_0 .. c_{n-1} give n - 1 targets: every character after the first,
each predicted from those before it. Both models are charged for exactly these n - 1 characters, in bits:

- a character in the model's vocabulary costs -log2 p(c_j | what the model read before it);
- a character outside it (the model cannot name it: its `<unk>`, if any, stands for a whole class of
  characters) costs UNKNOWN_BITS = log2(0x110000) ~ 20.087 bits, a uniform choice among every Unicode code
  point: what naming it costs with no model at all, the same for every model, so a smaller vocabulary never
  buys a cheaper charge. So is a character the model has nothing before it to predict from (its reading of
  the text starts there).

A model reads the text as it can: characters outside its vocabulary become its `<unk>` where it reserves one,
and are left out of its reading where it does not. Bits per character = the bits summed / (n - 1); perplexity
= 2 ** bits per character. The new model may take the alias when its perplexity is at most the champion's
times (1 + tolerance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.fetch import Located

# The charge for a character a model cannot encode: a uniform choice among every Unicode code point.
CODE_POINTS = 0x110000
UNKNOWN_BITS = math.log2(CODE_POINTS)
# The samples shown side by side are drawn at temperature 1 (the distribution the bits measure).
SAMPLE_TEMPERATURE = 1.0

Verdict = Literal["first", "promoted", "rejected"]


class GateParams(BaseModel):
    """Whether a new version's model takes an alias, and on what evidence (off unless --promote is given)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    promote: str | None = Field(
        None,
        description="move this alias (e.g. champion) to each new version's model when it is not worse than the "
        "model the alias names (needs --train, and --val-fraction > 0 or --eval-source)",
    )
    tolerance: float = Field(
        0.02,
        ge=0.0,
        le=1.0,
        description="how much worse the new model may be: its perplexity at most the champion's times (1 + this)",
    )
    eval_source: str | None = Field(
        None,
        description="compare the models on this file, folder, .zip or URL (cleaned as the new model's corpus) "
        "instead of the new version's validation tail",
    )
    sample_chars: int = Field(50, ge=1, description="characters of each model's sample shown in the decision")
    redecide: bool = Field(
        False, description="decide again for a version decided already (by default a version is decided once)"
    )

    @field_validator("eval_source")
    @classmethod
    def _no_credentials(cls, source: str | None) -> str | None:
        """A flow parameter: refused where it carries a password, as a source is (tasks.fetch.Located)."""
        return None if source is None else Located(source=source).source


@dataclass(frozen=True)
class Reading:
    """How one model reads a text: the indices it is fed, and for each of the text's n - 1 targets the row of
    its predictions that scores it (-1: charged UNKNOWN_BITS instead)."""

    stream: np.ndarray  # (m,) int64: the model's input, m <= n
    rows: np.ndarray  # (n - 1,) int64: prediction row r scores stream[r + 1]; -1 where charged


def reading(ids: np.ndarray, unk: int | None) -> Reading:
    """`ids`: each character's index in the model's vocabulary, -1 outside it, (n,). With `<unk>` the model
    reads every character (the unknown ones as `<unk>`) and target j is row j - 1; without, it reads only the
    known ones and target j is the row before j's place in that reading. Unknown targets are charged."""
    ids = np.asarray(ids, dtype=np.int64)
    known = ids >= 0  # (n,) bool
    if unk is not None:
        stream = np.where(known, ids, unk)  # (n,)
        rows = np.arange(-1, len(ids) - 1, dtype=np.int64)[1:]  # (n - 1,): target j scored by row j - 1
    else:
        stream = ids[known]  # (m,)
        place = np.cumsum(known) - 1  # (n,): each known character's place in the stream
        rows = place[1:] - 1  # (n - 1,): the row before it; -1 for the stream's first character
    rows = np.where(known[1:], rows, -1)  # (n - 1,)
    return Reading(stream=stream, rows=rows)


@dataclass(frozen=True)
class Tally:
    """A model's bits over the compared characters."""

    characters: int  # targets compared (the text's characters less its first)
    charged: int  # of those, charged UNKNOWN_BITS (outside the vocabulary, or nothing read before them)
    bits: float  # summed

    @property
    def bits_per_char(self) -> float:
        return self.bits / self.characters

    @property
    def perplexity(self) -> float:
        return 2.0**self.bits_per_char


def tally(read: Reading, row_bits: np.ndarray, charge: float = UNKNOWN_BITS) -> Tally:
    """Sum each target's bits: `row_bits[r]` (m - 1,) is -log2 p(stream[r + 1] | stream[: r + 1]), the
    charge where the reading has no row for the target."""
    charged = read.rows < 0  # (n - 1,) bool
    bits = float(np.asarray(row_bits, dtype=np.float64)[read.rows[~charged]].sum()) + charge * int(charged.sum())
    return Tally(characters=len(read.rows), charged=int(charged.sum()), bits=bits)


def verdict(new: Tally, champion: Tally | None, tolerance: float) -> Verdict:
    """first: no champion yet; promoted: new perplexity <= champion's x (1 + tolerance); rejected otherwise.
    The two must be tallied over the same characters."""
    if champion is None:
        return "first"
    if new.characters != champion.characters:
        raise ValueError(f"tallies over different characters: {new.characters} and {champion.characters}")
    return "promoted" if new.perplexity <= champion.perplexity * (1.0 + tolerance) else "rejected"


@dataclass(frozen=True)
class VocabChange:
    """Characters the new vocabulary has that the old lacks (added), and the other way (removed), by code point;
    reserved tokens aside."""

    added: tuple[str, ...]
    removed: tuple[str, ...]


def vocab_change(old: list[str], new: list[str]) -> VocabChange:
    before, after = set(old), set(new)
    return VocabChange(added=tuple(sorted(after - before)), removed=tuple(sorted(before - after)))

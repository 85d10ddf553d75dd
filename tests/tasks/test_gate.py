"""The quality gate's fair comparison, on hand-made cases with exact values: how each model reads a text, the
charge for what it cannot encode, the verdict at and around the tolerance, and the per-position scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from tasks.gate import UNKNOWN_BITS, GateParams, Tally, reading, tally, verdict, vocab_change
from tasks.gate_scoring import gate_streams, row_bits
from tasks.train.model import build_model
from tasks.train.params import ModelParams
from tasks.train.scoring import score

CPU = torch.device("cpu")


def test_the_unknown_charge_is_a_uniform_choice_among_every_code_point():
    assert math.log2(1_114_112) == UNKNOWN_BITS
    assert round(UNKNOWN_BITS, 6) == 20.087463


def test_a_model_with_unk_reads_every_character_and_is_charged_for_the_unknown_ones():
    read = reading(np.array([2, -1, 3, 1]), unk=0)
    assert read.stream.tolist() == [2, 0, 3, 1]
    assert read.rows.tolist() == [-1, 1, 2]  # target 1 is unknown: charged; target j is row j - 1


def test_a_model_without_unk_skips_what_it_cannot_read_and_is_charged_for_it():
    read = reading(np.array([-1, 2, -1, 3, 1]), unk=None)
    assert read.stream.tolist() == [2, 3, 1]
    # Target 1 ('2') is the first character it reads: nothing before it to predict from, charged; target 2 is
    # unknown, charged; targets 3 and 4 are rows 0 and 1 of its reading.
    assert read.rows.tolist() == [-1, -1, 0, 1]


def test_the_tally_sums_the_rows_and_the_charges_over_every_target():
    read = reading(np.array([2, -1, 3, 1]), unk=0)
    counted = tally(read, np.array([1.0, 2.0, 0.5]), charge=3.0)
    assert counted == Tally(characters=3, charged=1, bits=5.5)
    assert counted.bits_per_char == 5.5 / 3
    assert counted.perplexity == 2 ** (5.5 / 3)
    assert tally(read, np.array([1.0, 2.0, 0.5])).bits == 2.5 + UNKNOWN_BITS


def test_the_verdict_at_and_around_the_tolerance():
    new = Tally(characters=4, charged=0, bits=8.0)  # perplexity 4
    assert verdict(new, None, 0.02) == "first"
    assert verdict(new, Tally(characters=4, charged=0, bits=8.0), 0.0) == "promoted"  # not worse: equal
    worse_than = Tally(characters=4, charged=0, bits=7.84)  # perplexity 2 ** 1.96 = 3.8906
    assert verdict(new, worse_than, 0.02) == "rejected"  # 4 > 3.9684
    assert verdict(new, worse_than, 0.03) == "promoted"  # 4 <= 4.0073
    with pytest.raises(ValueError, match="different characters"):
        verdict(new, Tally(characters=5, charged=0, bits=8.0), 0.02)


def test_the_vocabulary_change_by_character():
    change = vocab_change(["a", "b", "c"], ["b", "c", "d", "e"])
    assert (change.added, change.removed) == (("d", "e"), ("a",))


def test_the_tolerance_is_a_relative_perplexity_between_0_and_1():
    assert GateParams().tolerance == 0.02
    for bad in (-0.01, 1.5):
        with pytest.raises(ValueError, match="tolerance"):
            GateParams(tolerance=bad)


class Uniform(nn.Module):
    """Every next token equally likely: log2(vocab) bits each."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def init_state(self, batch: int, device: torch.device) -> None:
        return None

    def forward(self, x: torch.Tensor, state: None) -> tuple[torch.Tensor, None]:
        return torch.zeros(*x.shape, self.vocab), state  # (batch, steps, vocab)


def test_two_vocabularies_are_charged_on_the_same_characters():
    text = np.array([ord(c) for c in "abcab"])  # 4 targets: b c a b
    abc = {ord("a"): 0, ord("b"): 1, ord("c"): 2}  # no <unk>
    unk_ab = {ord("a"): 1, ord("b"): 2}  # <unk> at 0
    results = {}
    for name, table, unk in (("abc", abc, None), ("unk_ab", unk_ab, 0)):
        read = reading(np.array([table.get(int(c), -1) for c in text]), unk)
        results[name] = tally(read, row_bits(Uniform(3), read.stream, num_steps=2, device=CPU))
    assert results["abc"].characters == results["unk_ab"].characters == 4
    assert results["abc"].charged == 0
    assert results["abc"].bits == pytest.approx(4 * math.log2(3), abs=1e-6)  # float32 logits
    assert results["unk_ab"].charged == 1  # 'c': its <unk> probability is not the character's
    assert results["unk_ab"].bits == pytest.approx(3 * math.log2(3) + UNKNOWN_BITS, abs=1e-6)  # float32 logits


@pytest.mark.parametrize("model", ["gru", "scratch", "transformer"])
def test_every_position_scored_sums_to_validations_score(model):
    torch.manual_seed(0)
    net = build_model(11, ModelParams(model=model, hidden=8, heads=2), context=7)
    indices = np.random.default_rng(0).integers(0, 11, size=101)
    bits = row_bits(net, indices, num_steps=7, device=CPU)
    assert bits.shape == (100,)
    whole = score(net, indices, num_steps=7, streams=1, device=CPU)
    assert whole.tokens == 100
    assert bits.sum() == pytest.approx(whole.nll / math.log(2), rel=1e-6)  # float32 logits, summed in another order


def test_a_long_text_is_read_in_streams_of_4096_characters_at_most_16():
    assert [gate_streams(n) for n in (1, 8191, 8192, 10**6)] == [1, 1, 2, 16]
    torch.manual_seed(0)
    net = build_model(5, ModelParams(model="gru", hidden=4))
    indices = np.random.default_rng(1).integers(0, 5, size=8200)  # 8199 targets: 2 streams, the last padded
    bits = row_bits(net, indices, num_steps=35, device=CPU)
    assert bits.shape == (8199,)
    assert np.all(bits > 0)
    # The first stream is the text's start read from a zero state: as a single stream reads it.
    alone = row_bits(net, indices[:4101], num_steps=35, device=CPU)
    assert np.allclose(bits[:4100], alone, rtol=1e-5)  # float32, batched otherwise

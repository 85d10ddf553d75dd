"""Evaluation without a store: the settings resolved against the model, the part of the text evaluated, the
mapping to the vocabulary (unknown characters mapped, refused or skipped), and the scoring's arithmetic."""

import math

import numpy as np
import pytest
import torch

from tasks.errors import ParameterError
from tasks.evaluate import (
    EvaluateError,
    EvaluateParams,
    NoValidationSplit,
    TrainedWith,
    UnknownCharacters,
    cut,
    evaluate,
    evaluated_range,
    resolve,
    to_indices,
)
from tasks.train.model import build_model
from tasks.train.params import DeviceUnavailable, ModelParams
from tasks.train.scoring import score
from tasks.vocab import VocabParams, build_vocab

TEXT = "想要有直升机 想要和你飞到宇宙去 想要和你融化在一起 融化在宇宙里"
PLAIN = build_vocab(TEXT, VocabParams())
WITH_UNK = build_vocab(TEXT, VocabParams(reserved=("<unk>",)))
TRAINED = TrainedWith(batch_size=4, num_steps=8, val_fraction=0.1, device="cpu", checkpoints=("last",), model="m")
RESOLVED = EvaluateParams(checkpoint="last", streams=4, num_steps=8, device="cpu")


def never() -> bool:
    return False


def test_defaults_resolve_to_the_models_own_settings_so_that_the_key_names_what_is_used():
    assert resolve(EvaluateParams(), TRAINED, never) == RESOLVED
    mine = EvaluateParams(streams=2, num_steps=5, checkpoint="last", device="cpu", split="val", max_chars=100)
    assert resolve(mine, TRAINED, never) == mine
    assert resolve(EvaluateParams(), TrainedWith(**{**TRAINED.__dict__, "device": "cuda"}), never).device == "cpu"


def test_settings_the_model_cannot_honour_are_refused():
    without_split = TrainedWith(**{**TRAINED.__dict__, "val_fraction": 0.0})
    with pytest.raises(NoValidationSplit, match="trained without a validation split.*evaluate --split all"):
        resolve(EvaluateParams(split="val"), without_split, never)
    with pytest.raises(ParameterError, match="keeps no best checkpoint .it keeps: last.; evaluate --checkpoint last"):
        resolve(EvaluateParams(checkpoint="best"), TRAINED, never)
    with pytest.raises(DeviceUnavailable, match="no CUDA device"):
        resolve(EvaluateParams(device="cuda"), TRAINED, never)
    with pytest.raises(ValueError, match="max_chars"):
        EvaluateParams(max_chars=0)


def test_max_chars_truncates_then_val_keeps_the_tail_the_batches_held_out():
    assert evaluated_range(1000, EvaluateParams(), 0.1) == (0, 1000)
    assert evaluated_range(1000, EvaluateParams(split="val"), 0.1) == (900, 1000)  # split_validation's cut
    assert evaluated_range(1000, EvaluateParams(max_chars=300), 0.1) == (0, 300)
    assert evaluated_range(1000, EvaluateParams(max_chars=300, split="val"), 0.1) == (270, 300)
    assert evaluated_range(10, EvaluateParams(max_chars=300), 0.1) == (0, 10)
    chunks = ["abcd", "efgh", "ij"]
    assert list(cut(chunks, 0, 10)) == chunks
    assert list(cut(chunks, 3, 9)) == ["d", "efgh", "i"]
    assert list(cut(chunks, 4, 8)) == ["efgh"]
    assert list(cut(chunks, 9, 9)) == []


def test_characters_the_vocabulary_lacks_become_unk_where_it_is_reserved():
    mapped = to_indices(["想要a和你", "b飞a"], WITH_UNK, skip_unknown=False)
    unk = WITH_UNK.unk
    assert unk == 0
    assert mapped.indices.tolist() == [
        WITH_UNK.tokens.index("想"),
        WITH_UNK.tokens.index("要"),
        unk,
        WITH_UNK.tokens.index("和"),
        WITH_UNK.tokens.index("你"),
        unk,
        WITH_UNK.tokens.index("飞"),
        unk,
    ]
    assert (mapped.chars, mapped.unknown_mapped, mapped.unknown_skipped) == (8, 3, 0)


def test_without_unk_they_are_refused_before_any_scoring_counted_and_the_first_few_named():
    text = ["想要a和b", "c你d飞e", "ff想g"]
    with pytest.raises(UnknownCharacters) as refused:
        to_indices(text, PLAIN, skip_unknown=False)
    assert str(refused.value) == (
        "the text has 8 characters the model's vocabulary lacks (7 distinct: 'a', 'b', 'c', 'd', 'e', …) and the "
        "vocabulary reserves no '<unk>' to map them to; pass --skip-unknown to drop them (they are counted), or "
        "evaluate a model whose vocabulary reserves '<unk>'"
    )


def test_or_dropped_and_counted_with_skip_unknown():
    mapped = to_indices(["想要a和b", "c你d飞e", "ff想g"], PLAIN, skip_unknown=True)
    assert "".join(PLAIN.tokens[i] for i in mapped.indices) == "想要和你飞想"
    assert (mapped.chars, mapped.unknown_mapped, mapped.unknown_skipped) == (14, 0, 8)


def test_a_text_with_no_character_the_model_knows_is_refused_in_one_line():
    for vocab, skip in ((PLAIN, True), (WITH_UNK, False)):
        with pytest.raises(EvaluateError, match=r"^the text has no character the model knows \(5 characters, none"):
            to_indices(["hello"], vocab, skip_unknown=skip)
    with pytest.raises(EvaluateError, match="has 1 character: at least 2 are needed"):
        to_indices(["想xyz"], PLAIN, skip_unknown=True)


def test_perplexity_and_bits_per_char_are_the_summed_nats_per_token():
    """A seeded untrained model: its score pinned (1e-6, one thread), and what a perplexity is, exactly."""
    torch.manual_seed(0)
    model = build_model(len(PLAIN), ModelParams(model="rnn", hidden=8))
    mapped = to_indices([TEXT], PLAIN, skip_unknown=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        scored = evaluate(model, mapped, RESOLVED)
    finally:
        torch.set_num_threads(threads)
    assert scored == score(model, mapped.indices, num_steps=8, streams=4, device=torch.device("cpu"))
    assert scored.tokens == len(TEXT) - 1  # fewer than 8 windows a stream: one stream reads it all
    assert scored.nll == pytest.approx(GOLDEN_NLL, rel=1e-6)
    assert scored.perplexity == math.exp(scored.nll / scored.tokens)
    assert scored.bits_per_char == scored.nll / scored.tokens / math.log(2)
    assert np.isclose(scored.bits_per_char, math.log2(scored.perplexity))


GOLDEN_NLL = 94.89089775085449  # about 32 ln 20 = 95.9: an untrained model guesses near uniformly

"""Options generated from the parameter models: every field has one, absent options keep the model's
default, and the special spellings (negated, cleared, repeatable, 'none') map back onto the fields."""

import argparse

import pytest

from charflow import options
from tasks.batches import BatchesParams
from tasks.clean import CleanParams, Replacement
from tasks.train.params import TrainParams


def parser_for(*models):
    """As the CLI does it: a field shared by two models (seed) is one option, the first model's."""
    parser, seen = argparse.ArgumentParser(), set()
    for model in models:
        options.add_model(parser, model, model.__name__, skip=seen & set(model.model_fields))
        seen |= set(model.model_fields)
    return parser


@pytest.mark.parametrize("model", [CleanParams, BatchesParams, TrainParams])
def test_no_option_given_is_the_models_own_defaults(model):
    args = parser_for(model).parse_args([])
    assert options.given(args, model) == {}
    assert options.build(args, model) == model()


def test_every_spelling_maps_onto_its_field():
    parser = parser_for(CleanParams, BatchesParams, TrainParams)
    args = parser.parse_args(
        ["--max-chars", "none", "--replace", "\\r\\n=\\n", "--keep-last", "--prefix", "a", "--prefix", "bc"]
        + ["--clip", "none", "--model", "gru", "--lr", "0.5", "--random-offset", "--checkpoint-every", "3"]
    )
    clean, spec, training = (options.build(args, m) for m in (CleanParams, BatchesParams, TrainParams))
    assert clean.max_chars is None
    assert clean.replacements == (Replacement(old="\r\n", new="\n"),)
    assert spec.drop_last is False
    assert spec.random_offset is True
    assert training.prefixes == ("a", "bc")
    assert training.clip is None
    assert training.model == "gru"
    assert (training.lr, training.checkpoint_every) == (0.5, 3)
    seeded = parser.parse_args(["--seed", "4"])
    assert options.build(seeded, BatchesParams).seed == options.build(seeded, TrainParams).seed == 4
    assert options.build(parser.parse_args(["--no-replace", "--replace", "a=b"]), CleanParams).replacements == ()


def test_choices_come_from_the_models_literals():
    with pytest.raises(SystemExit):
        parser_for(TrainParams).parse_args(["--optimizer", "rmsprop"])
    help_text = parser_for(TrainParams).format_help()
    assert "{sgd,adam,adamw}" in help_text
    assert "{scratch,rnn,gru,lstm,transformer}" in help_text


def test_rule_escapes_are_exactly_four_and_other_characters_stay_themselves():
    assert options.unescape("分\\n\\t\\r\\\\x\\q") == "分\n\t\r\\x\\q"
    args = parser_for(CleanParams).parse_args(["--replace", "分\\n=开", "--regex", "(a)b", "\\1", "--replace", "c=d"])
    assert options.build(args, CleanParams).replacements == (
        Replacement(old="分\n", new="开"),
        Replacement(old="(a)b", new="\\1", regex=True),
        Replacement(old="c", new="d"),
    )

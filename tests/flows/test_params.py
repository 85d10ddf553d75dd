"""Flat flow parameters generated from the models: the signature, the schema Prefect deploys, validation."""

import inspect

import pytest
from prefect.utilities.callables import parameter_schema

from flows.params import flat_fields, flat_parameters, pick
from flows.train import train
from tasks.batches import BatchesParams
from tasks.train.params import TrainParams


def test_every_setting_is_a_flat_parameter_with_the_models_default():
    signature = inspect.signature(train.fn)
    for model in (BatchesParams, TrainParams):
        for name, field in model.model_fields.items():
            assert signature.parameters[name].default == field.default, name
            assert signature.parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert list(signature.parameters)[:6] == ["source", "name", "sha256", "ingest", "clean", "vocab"]
    assert "settings" not in signature.parameters
    # One `seed`, shared by the sampler and the model, with one default.
    assert BatchesParams.model_fields["seed"].default == TrainParams.model_fields["seed"].default
    assert list(flat_fields(BatchesParams, TrainParams)).count("seed") == 1


def test_the_deployed_schema_has_types_choices_and_defaults():
    schema = parameter_schema(train).model_dump()
    properties = schema["properties"]
    assert properties["epochs"]["default"] == 250 and properties["epochs"]["type"] == "integer"
    assert properties["sampler"]["enum"] == ["random", "consecutive"]
    assert properties["model"]["enum"] == ["scratch", "rnn", "gru", "lstm"]
    assert properties["lr"]["default"] == 100.0
    assert properties["prefixes"]["default"] == ["分开", "不分开"]
    assert "settings" not in properties


def test_prefect_validates_and_casts_flat_parameters():
    validated = train.validate_parameters({"epochs": "20", "sampler": "consecutive", "clip": None})
    assert validated["epochs"] == 20 and validated["sampler"] == "consecutive" and validated["clip"] is None
    with pytest.raises(Exception, match="sampler"):
        train.validate_parameters({"sampler": "shuffled"})


def test_the_function_receives_the_fields_as_settings():
    @flat_parameters(BatchesParams)
    def flow(source: str | None = None, **settings):
        return source, settings

    assert flow(source="x", epochs=3) == ("x", {"epochs": 3})
    assert pick(BatchesParams, {"epochs": 3, "lr": 0.1}) == {"epochs": 3}

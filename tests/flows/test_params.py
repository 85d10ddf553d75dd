"""Flat flow parameters generated from the models, on every flow: the signature, the schema Prefect deploys,
validation, and the nested shape of earlier releases refused in one line."""

import inspect

import pytest
from prefect.exceptions import ParameterTypeError
from prefect.utilities.callables import parameter_schema

from flows.batches import batches
from flows.evaluate import evaluate
from flows.params import flat_fields, flat_parameters
from flows.pipeline import pick
from flows.prepare import prepare
from flows.reingest import reingest
from flows.train import train, train_batches
from tasks.batches import BatchesParams
from tasks.clean import CleanParams
from tasks.evaluate import EvaluateParams
from tasks.gate import GateParams
from tasks.ingest import IngestParams
from tasks.train.params import TrainParams
from tasks.vocab import VocabParams

PREPARE = (IngestParams, CleanParams, VocabParams)
FLOWS = {
    prepare: (["source", "name", "sha256"], PREPARE),
    batches: (["source", "name", "sha256"], (*PREPARE, BatchesParams)),
    train: (["source", "name", "sha256"], (*PREPARE, BatchesParams, TrainParams)),
    train_batches: (["batches"], (TrainParams,)),
    reingest: (["sources", "train"], (*PREPARE, BatchesParams, TrainParams, GateParams)),
    evaluate: (["model", "text"], (EvaluateParams,)),
}


@pytest.mark.parametrize("flow", FLOWS, ids=lambda f: f.name)
def test_every_setting_of_every_flow_is_a_flat_parameter_with_the_models_default(flow):
    own, models = FLOWS[flow]
    signature = inspect.signature(flow.fn)
    assert list(signature.parameters) == [*own, *flat_fields(*models)]
    for model in models:
        for name, field in model.model_fields.items():
            assert signature.parameters[name].default == field.default, name
            assert signature.parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert "settings" not in signature.parameters


def test_one_seed_is_shared_by_the_sampler_and_the_model():
    assert BatchesParams.model_fields["seed"].default == TrainParams.model_fields["seed"].default
    assert list(flat_fields(BatchesParams, TrainParams)).count("seed") == 1


def test_the_deployed_schema_has_types_choices_and_defaults():
    properties = parameter_schema(train).model_dump()["properties"]
    assert properties["epochs"]["default"] == 250
    assert properties["epochs"]["type"] == "integer"
    assert properties["sampler"]["enum"] == ["random", "consecutive"]
    assert properties["model"]["enum"] == ["scratch", "rnn", "gru", "lstm", "transformer"]
    assert properties["lr"]["default"] == 100.0
    assert properties["prefixes"]["default"] == ["分开", "不分开"]
    assert properties["max_chars"]["default"] == 10000
    # The UI's form says what each parameter means, in the model's own words.
    assert properties["epochs"]["description"] == BatchesParams.model_fields["epochs"].description
    assert properties["max_chars"]["description"] == CleanParams.model_fields["max_chars"].description
    assert "settings" not in properties
    assert "ingest" not in properties


def test_prefect_validates_and_casts_flat_parameters():
    validated = train.validate_parameters({"epochs": "20", "sampler": "consecutive", "clip": None})
    assert validated["epochs"] == 20
    assert validated["sampler"] == "consecutive"
    assert validated["clip"] is None
    with pytest.raises(Exception, match="sampler"):
        train.validate_parameters({"sampler": "shuffled"})


@pytest.mark.parametrize(
    ("flow", "nested", "named"),
    [
        (prepare, {"clean": {"max_chars": 5}}, "clean"),
        (batches, {"sampler": {"epochs": 3}}, "sampler"),
        (train_batches, {"batches": "x", "training": {"epochs": 3}}, "training"),
        (reingest, {"ingest": {"errors": "replace"}, "vocab": {}}, "ingest, vocab"),
    ],
)
def test_the_nested_shape_of_earlier_releases_is_refused_naming_the_flat_parameters(flow, nested, named):
    with pytest.raises(ParameterTypeError) as refused:
        flow.validate_parameters(nested)
    message = str(refused.value)
    assert f"the nested parameter{'s' if ',' in named else ''} {named} of earlier releases" in message
    assert f"{flow.name} takes {', '.join(inspect.signature(flow.fn).parameters)}" in message
    assert "\n" not in message


def test_the_function_receives_the_fields_as_settings():
    @flat_parameters(BatchesParams)
    def flow(source: str | None = None, **settings):
        return source, settings

    assert flow(source="x", epochs=3) == ("x", {"epochs": 3})
    assert pick(BatchesParams, {"epochs": 3, "lr": 0.1}) == {"epochs": 3}

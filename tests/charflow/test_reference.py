"""docs/cli.md is generated from the parameter models: it is never stale, and every option has its help."""

import pytest

from artifacts.settings import Settings
from artifacts.upkeep import GcParams
from charflow import reference
from charflow.inspect_cli import Output, ShowParams
from charflow.serve import ServeParams
from tasks.batches import BatchesParams
from tasks.clean import CleanParams
from tasks.gate import GateParams
from tasks.ingest import IngestParams
from tasks.train.params import GenerateParams, TrainParams
from tasks.vocab import VocabParams

MODELS = [
    IngestParams,
    CleanParams,
    VocabParams,
    BatchesParams,
    TrainParams,
    GenerateParams,
    GateParams,
    ServeParams,
    GcParams,
    ShowParams,
    Output,
    Settings,
]


def test_docs_cli_md_is_the_generated_reference():
    assert reference.PATH.read_text(encoding="utf-8") == reference.render(), (
        "docs/cli.md is stale: run `python -m charflow.reference --write`"
    )


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_setting_says_what_it_means_once_in_its_model(model):
    missing = [name for name, field in model.model_fields.items() if not field.description]
    assert missing == []


def test_the_reference_shows_an_option_its_default_and_its_help():
    text = reference.render()
    assert "| `--epochs EPOCHS` | epochs of batches (and of training), 100,000 at most (default: 250) |" in text
    sampler = "| `--sampler {random,consecutive}` | the book's random or consecutive minibatches (default: 'random') |"
    assert sampler in text
    assert "| `CHARFLOW_LOCK_WAIT` | `1800.0` | seconds a run waits for a stage another run is building |" in text

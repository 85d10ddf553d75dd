"""A command answered from the store without Prefect: only when every stage is stored intact and recorded."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flows.answer import answer, answer_train_on
from flows.home import store_root
from flows.pipeline import PrepareParams, pick, plain_runner
from flows.pipeline import train as run_train
from tasks.batches import BatchesParams
from tasks.fetch import resolve_source
from tasks.train.params import TrainParams
from tests.conftest import TINY
from tests.helpers import run_cli

PREPARE = PrepareParams().flat()
SAMPLER = BatchesParams(**pick(BatchesParams, TINY))
TRAINING = TrainParams(**pick(TrainParams, TINY), device="cpu")


@pytest.fixture
def trained(home, lyrics_zip):
    """The lyrics prepared, batched and trained in this home's store, without Prefect."""
    return run_train(
        plain_runner(store_root()), resolve_source(str(lyrics_zip), "songs"), sampler=SAMPLER, training=TRAINING
    )


def settings(**changes) -> dict:
    return {**PREPARE, **SAMPLER.model_dump(), **TRAINING.model_dump(), **changes}


def test_every_stage_stored_is_the_runs_answer_marked_cached(trained, lyrics_zip):
    found = answer("train", str(lyrics_zip), "songs", None, settings())
    assert found is not None
    assert (found.corpus, found.version, found.new_version) == ("songs", 1, False)
    assert {s: r.key for s, r in found.stages.items()} == {s: r.key for s, r in trained.stages.items()}
    assert [r.cache_hit for r in found.stages.values()] == [True] * 6
    assert [r.cache_hit for r in trained.stages.values()] == [False] * 6
    assert found.stages["vocab"].summary["size"] == 1_027
    prepared = answer("prepare", str(lyrics_zip), "songs", None, PREPARE)
    assert prepared is not None
    assert list(prepared.stages) == ["ingest", "clean", "vocab", "encode"]


def test_a_deleted_manifest_is_no_answer(trained, lyrics_zip):
    (trained.stages["clean"].path / "_manifest.json").unlink()
    assert answer("prepare", str(lyrics_zip), "songs", None, PREPARE) is None


def test_a_damaged_artifact_is_no_answer(trained, lyrics_zip):
    parquet = next(trained.stages["encode"].path.glob("*.parquet"))
    parquet.write_bytes(parquet.read_bytes()[:-10])
    assert answer("batches", str(lyrics_zip), "songs", None, settings()) is None


def test_other_parameters_or_another_name_are_no_answer(trained, lyrics_zip):
    assert answer("train", str(lyrics_zip), "songs", None, settings(lr=0.02)) is None
    assert answer("batches", str(lyrics_zip), "songs", None, settings(num_steps=9)) is None
    # The same artifacts, but no version of a corpus of that name: registering one is a write.
    assert answer("prepare", str(lyrics_zip), "other", None, PREPARE) is None


def test_training_on_stored_batches_is_answered(trained):
    refs = answer_train_on(trained.stages["batches"].key[:12], TRAINING.model_dump())
    assert refs is not None
    assert refs["train"].key == trained.stages["train"].key
    assert refs["train"].cache_hit is True
    assert answer_train_on(trained.stages["batches"].key, {**TRAINING.model_dump(), "lr": 0.02}) is None


def test_a_cached_command_loads_neither_prefect_nor_torch(trained, lyrics_zip, home):
    script = (
        "import sys; from charflow.cli import main; "
        f"code = main(['run', {str(lyrics_zip)!r}, '--name', 'songs', '--batch-size', '4', '--num-steps', '8', "
        "'--epochs', '2', '--model', 'rnn', '--hidden', '16', '--optimizer', 'adam', '--lr', '0.01', "
        "'--pred-period', '1', '--pred-chars', '5', '--device', 'cpu', '--json']); "
        "print(json.dumps([code, sorted(m for m in ('prefect', 'torch', 'matplotlib') if m in sys.modules)]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import json; " + script], capture_output=True, text=True, check=True, timeout=120
    )
    *answer_lines, last = result.stdout.strip().splitlines()
    assert json.loads(last) == [0, []]
    assert json.loads("\n".join(answer_lines))["model"]["key"] == trained.stages["train"].key
    assert "answered from it, with no flow run" in result.stderr


def test_the_command_recomputes_a_stage_whose_manifest_is_gone(cli_on, tmp_path, lyrics_zip, prefect_server):
    """The store prepared in this process (a Prefect program with a PREFECT_HOME of its own: see test_cache for
    the records it may leave); the commands that answer from it, or recompute, in their own."""
    home = tmp_path / "home"
    code, first, err = cli_on(home, prefect_server, "prepare", str(lyrics_zip), "--json")
    assert code == 0, err[-2000:]
    again = run_cli("prepare", str(lyrics_zip), "--json", home=home)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "answered from it" in again.stderr
    assert json.loads(again.stdout)["stages"]["vocab"]["cache_hit"] is True
    made = json.loads(first)["stages"]
    (home / "store" / "clean" / made["clean"]["key"] / "_manifest.json").unlink()
    third = run_cli("prepare", str(lyrics_zip), "--json", home=home, api_url=prefect_server)
    assert third.returncode == 0, third.stderr[-2000:]
    assert "answered from it" not in third.stderr
    hits = {stage: ref["cache_hit"] for stage, ref in json.loads(third.stdout)["stages"].items()}
    assert hits == {"ingest": True, "clean": False, "vocab": True, "encode": True}


def test_prepare_batches_and_inspect_load_neither_torch_nor_matplotlib(trained, home):
    """They draw nothing here (the vocabulary's chart is drawn when it is built), so they import neither."""
    script = (
        "import sys, io, contextlib, json; import flows.prepare, flows.batches; from charflow.cli import main\n"
        "for args in (['inspect', 'ls'], ['inspect', 'show', 'songs@1/vocab'], ['inspect', 'show', 'songs@1/train'],"
        " ['inspect', 'lineage', 'songs@1/train'], ['inspect', 'verify']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        assert main(args) == 0, args\n"
        "print(json.dumps(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "[]\n"


def test_with_a_server_named_the_answer_is_recorded_there_as_a_cached_flow_run(tmp_path, lyrics_zip, prefect_server):
    import urllib.request

    home = tmp_path / "home"
    first = run_cli("prepare", str(lyrics_zip), "--name", "recorded", "--json", home=home, api_url=prefect_server)
    assert first.returncode == 0, first.stderr[-2000:]
    again = run_cli("prepare", str(lyrics_zip), "--name", "recorded", "--json", home=home, api_url=prefect_server)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "answered from it, recorded as a flow run in state Cached" in again.stderr
    assert json.loads(again.stdout)["stages"] == {
        stage: {**ref, "cache_hit": True} for stage, ref in json.loads(first.stdout)["stages"].items()
    }

    def post(path: str, body: dict) -> list[dict]:
        request = urllib.request.Request(
            f"{prefect_server}/{path}", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    runs = post("flow_runs/filter", {"flow_runs": {"tags": {"all_": ["corpus:recorded"]}}, "sort": "START_TIME_ASC"})
    encode_key = json.loads(first.stdout)["stages"]["encode"]["key"]
    assert sorted((run["name"], run["state_name"]) for run in runs) == [
        (f"prepare recorded v1 · encode {encode_key[:12]}", "Cached"),
        (f"prepare recorded v1 · encode {encode_key[:12]}", "Completed"),
    ]
    cached = next(run for run in runs if run["state_name"] == "Cached")
    assert cached["parameters"]["name"] == "recorded"
    assert cached["parameters"]["max_chars"] == 10_000
    assert cached["tags"] == ["corpus:recorded", "version:1"]
    summary = post("artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [cached["id"]]}}})
    assert [artifact["key"] for artifact in summary] == ["recorded-run-summary"]
    assert f"| encode | `{encode_key[:12]}` | cached |" in summary[0]["data"]

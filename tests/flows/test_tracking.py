"""MLflow (flows/tracking.py) against a real `mlflow server` on 127.0.0.1 (SQLite, a local artifact folder), one
for the session: a tiny training logged once (its parameters, its metrics per epoch, its keys; its weights with
--mlflow-log-model), aliases of registered models, an unreachable server (one warning, the training stands), and
no MLflow at all when MLFLOW_TRACKING_URI is unset."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from artifacts import runs
from artifacts.catalog import JsonlCatalog
from artifacts.model import METRICS_FILE, WEIGHTS_FILE, TrainSummary
from flows import tracking
from flows.pipeline import PrepareParams, plain_runner, train
from tasks.batches import BatchesParams
from tasks.clean import CleanParams
from tasks.fetch import resolve_source
from tasks.train.params import TrainParams
from tests.helpers import free_port, run_cli
from tests.sharing import remember, shared_service, stop_process

REPO = Path(__file__).resolve().parents[2]
# Tiny: 2000 characters, 2 epochs, 16 hidden units; validated every epoch (a held-out tail).
SAMPLER = BatchesParams(batch_size=4, num_steps=8, epochs=2, val_fraction=0.2)
TRAINING = TrainParams(model="rnn", hidden=16, optimizer="adam", lr=0.01, pred_period=1, pred_chars=5, device="cpu")
PREPARE = PrepareParams(clean=CleanParams(max_chars=2000))
CLI_TINY = [
    "--max-chars", "2000", "--epochs", "2", "--hidden", "16", "--model", "rnn", "--batch-size", "4",
    "--num-steps", "8", "--optimizer", "adam", "--lr", "0.01", "--pred-period", "1", "--pred-chars", "5",
    "--device", "cpu",
]  # fmt: skip


def mlflow_executable() -> Path:
    """scripts/test.sh's venv of the server, inside .venv (its pyarrow cannot sit beside charflow's)."""
    return Path(sys.prefix) / "mlflow-server" / "bin" / "mlflow"


def _start_mlflow(folder: Path) -> dict:
    executable = mlflow_executable()
    if not executable.is_file():
        pytest.fail(f"no MLflow server at {executable}: run scripts/test.sh, which installs it there")
    port = free_port()
    # No job runner (its pool of processes serves MLflow's GenAI features, not tracking).
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | {
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"
    }
    command = [
        str(executable), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
    ]  # fmt: skip
    with (folder / "mlflow.log").open("w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).read().strip() == b"OK":
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"mlflow server did not start: {(folder / 'mlflow.log').read_text()[-3000:]}")
        time.sleep(0.3)
    return {"url": url, "pid": remember(proc), "artifacts": str(folder / "artifacts")}


def _stop_mlflow(held: dict) -> None:
    """The server's process group (`mlflow server` runs uvicorn as its child): SIGTERM, then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(held["pid"], signal.SIGTERM)
    stop_process(held["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.killpg(held["pid"], signal.SIGKILL)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """One MLflow tracking server for the session, all its xdist workers (each test takes its own corpus name,
    so its own experiment and registered model)."""
    with shared_service("mlflow", tmp_path_factory, _start_mlflow, _stop_mlflow) as held:
        yield held


@pytest.fixture
def tracked(mlflow_server, monkeypatch):
    monkeypatch.setenv(tracking.TRACKING_URI, mlflow_server["url"])
    monkeypatch.delenv(tracking.LOG_MODEL, raising=False)
    for variable in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(variable, raising=False)
    return mlflow_server


@pytest.fixture
def songs(request, lyrics_text, tmp_path) -> tuple[Path, str]:
    """A small corpus file, and a corpus name of the test's own (the MLflow server outlives a test)."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "songs.txt").write_text(lyrics_text[:3000], encoding="utf-8")
    return folder / "songs.txt", f"songs-{hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]}-{os.getpid()}"


def client():
    from mlflow import MlflowClient

    return MlflowClient()


def logged_runs(corpus: str) -> list:
    found = client().get_experiment_by_name(tracking.registered_name(corpus))
    return [] if found is None else client().search_runs([found.experiment_id])


def history(run_id: str, name: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client().get_metric_history(run_id, name)]


def test_source_of_keeps_an_object_store_url_and_marks_a_folder():
    key = "ab" * 32

    assert tracking.source_of("s3://bucket/team/", key) == f"s3://bucket/team/train/{key}"
    assert tracking.source_of("file:///srv/store", key) == f"charflow-file:///srv/store/train/{key}"


def test_reason_is_the_socket_error_where_mlflow_wraps_one():
    wrapped = ConnectionError(
        "API request to http://127.0.0.1:9/api/2.0/mlflow/experiments/get-by-name failed with exception "
        "HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded (Caused by NewConnectionError("
        "'<urllib3.connection.HTTPConnection object>: Failed to establish a new connection: [Errno 111] "
        "Connection refused'))"
    )

    assert tracking.reason(wrapped) == "[Errno 111] Connection refused"
    assert tracking.reason(ValueError("first line\nsecond")) == "first line"


@pytest.mark.slow
def test_a_new_run_is_logged_with_its_settings_metrics_and_keys_then_aliased(tracked, songs, tmp_path):
    source, corpus = songs
    runner = plain_runner(tmp_path / "store")

    made = train(runner, resolve_source(str(source), corpus), PREPARE, SAMPLER, TRAINING)

    model = made.stages["train"]
    [recorded] = runs.runs_of(runner.catalog.entries(), corpus)
    [logged] = logged_runs(corpus)
    assert logged.info.status == "FINISHED"
    assert logged.info.run_name == f"{corpus} v1"
    summary = TrainSummary.of(model)
    assert {k: v for k, v in logged.data.tags.items() if k.startswith("charflow.")} == {
        "charflow.corpus": corpus,
        "charflow.version": "1",
        "charflow.model": model.key,
        "charflow.batches": summary.batches_key,
        "charflow.vocab": summary.vocab_key,
        "charflow.store": (tmp_path / "store").resolve().as_uri(),
        "charflow.device": "cpu",
        "charflow.logged": "complete",
    }
    params = logged.data.params
    assert params == tracking.params_of(recorded)
    assert params["train.hidden"] == "16"
    assert params["train.model"] == "rnn"
    assert params["batches.epochs"] == "2"
    assert params["batches.val_fraction"] == "0.2"
    assert params["batches.sampler"] == "random"
    # Every epoch's figures, the epoch as the step, exactly as metrics.parquet has them.
    rows = pq.read_table(model.path / METRICS_FILE).to_pylist()
    assert [row["epoch"] for row in rows] == [1, 2]
    for name in tracking.EPOCH_METRICS:
        assert history(logged.info.run_id, name) == [(row["epoch"], row[name]) for row in rows], name
    assert history(logged.info.run_id, "bits_per_char") == [(2, recorded.bits_per_char)]
    assert not client().list_artifacts(logged.info.run_id)  # no weights without --mlflow-log-model

    # The same model met again (a cache hit): recorded already, so not logged again.
    train(runner, resolve_source(str(source), corpus), PREPARE, SAMPLER, TRAINING)
    assert len(logged_runs(corpus)) == 1
    assert runs.record_run(runner.catalog, runner.store, corpus, 1, model) is None
    elsewhere = JsonlCatalog(tmp_path / "elsewhere")
    assert runs.record_run(elsewhere, runner.store, corpus, 1, model) == runs.runs_of(elsewhere.entries())[0]

    # promote's alias: a model version whose source is the artifact, linked to the model's MLflow run.
    url = tracking.store_url(runner.store)
    assert tracking.set_alias(corpus, "champion", model.key, url, why="the first") == "1"
    registered = tracking.registered_name(corpus)
    version = client().get_model_version_by_alias(registered, "champion")
    source = f"charflow-file://{(tmp_path / 'store').resolve()}/train/{model.key}"
    assert (version.version, version.source) == ("1", source)
    assert version.run_id == logged.info.run_id
    assert version.tags == {"charflow.model": model.key, "charflow.store": url}
    assert version.description == "the first"


@pytest.mark.slow
def test_an_alias_moves_between_versions_made_once_per_model_and_is_removed(tracked, songs):
    _, corpus = songs
    registered = tracking.registered_name(corpus)
    first, second = "1" * 64, "2" * 64

    assert tracking.set_alias(corpus, "champion", first, "s3://models/team") == "1"
    assert tracking.set_alias(corpus, "champion", second, "s3://models/team") == "2"
    assert tracking.set_alias(corpus, "staging", first, "s3://models/team") == "1"  # its version, made once

    aliased = client().get_registered_model(registered).aliases
    assert aliased == {"champion": "2", "staging": "1"}
    assert client().get_model_version_by_alias(registered, "champion").source == f"s3://models/team/train/{second}"
    assert client().get_model_version(registered, "1").run_id in ("", None)  # never logged: no run to link

    assert tracking.set_alias(corpus, "champion", None, "s3://models/team") is None
    assert client().get_registered_model(registered).aliases == {"staging": "1"}
    assert tracking.set_alias(corpus, "champion", None, "s3://models/team") is None  # gone already: nothing to do


@pytest.mark.slow
def test_the_command_line_logs_the_weights_with_mlflow_log_model_once(
    tracked, songs, prefect_server, tmp_path, cli, monkeypatch
):
    source, corpus = songs
    home = tmp_path / "home"
    command = ["train", str(source), "--name", corpus, *CLI_TINY, "--mlflow-log-model", "--json"]

    done = run_cli(*command, home=home, api_url=prefect_server)

    assert done.returncode == 0, done.stderr
    model = json.loads(done.stdout)["model"]
    [logged] = logged_runs(corpus)
    assert logged.data.tags["charflow.model"] == model["key"]
    files = {Path(f.path).name for f in client().list_artifacts(logged.info.run_id, tracking.WEIGHTS_PATH)}
    assert WEIGHTS_FILE in files
    uploaded = Path(tracked["artifacts"]).rglob(f"{tracking.WEIGHTS_PATH}/{WEIGHTS_FILE}")
    assert [p.read_bytes() for p in uploaded] == [(Path(model["path"]) / WEIGHTS_FILE).read_bytes()]

    again = run_cli(*command, home=home, api_url=prefect_server)

    assert again.returncode == 0, again.stderr
    assert len(logged_runs(corpus)) == 1  # recorded once, logged once

    # `charflow promote` moves MLflow's registered-model alias with charflow's, and --unset removes it.
    monkeypatch.setenv("CHARFLOW_HOME", str(home))  # promote runs no flow: in this process
    code, _, err = cli("promote", model["key"][:12], "--as", "champion")
    assert code == 0, err
    version = client().get_model_version_by_alias(tracking.registered_name(corpus), "champion")
    assert version.source.endswith(f"/train/{model['key']}")
    assert version.run_id == logged.info.run_id
    code, _, err = cli("promote", f"{corpus}@champion", "--unset")
    assert code == 0, err
    assert "champion" not in client().get_registered_model(tracking.registered_name(corpus)).aliases


@pytest.mark.slow
def test_an_unreachable_server_is_one_warning_and_the_training_stands(songs, prefect_server, tmp_path, monkeypatch):
    source, corpus = songs
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv(tracking.TRACKING_URI, uri)
    home = tmp_path / "home"

    done = run_cli("train", str(source), "--name", corpus, *CLI_TINY, "--json", home=home, api_url=prefect_server)

    assert done.returncode == 0, done.stderr
    key = json.loads(done.stdout)["model"]["key"]
    assert [run.model for run in runs.runs_of(JsonlCatalog(home / "store").entries(), corpus)] == [key]
    [warning] = [line for line in done.stderr.splitlines() if "MLflow" in line or "Retrying" in line]
    assert warning.endswith(
        f"MLflow at {uri} did not take model {key[:12]} ([Errno 111] Connection refused); the run is in charflow's "
        f"catalog all the same: start that server or fix MLFLOW_TRACKING_URI, or unset it to stop logging to MLflow"
    )


def test_an_alias_mlflow_cannot_take_is_one_warning(monkeypatch, caplog):
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv(tracking.TRACKING_URI, uri)

    with caplog.at_level(logging.WARNING):
        assert tracking.set_alias("songs", "champion", "ab" * 32, "s3://models/team") is None

    assert [r.getMessage() for r in caplog.records] == [
        f"MLflow at {uri} did not take @champion -> abababababab of charflow-songs ([Errno 111] Connection refused); "
        f"charflow's alias moved all the same: start that server or fix MLFLOW_TRACKING_URI, then promote again"
    ]


@pytest.mark.slow
def test_unset_a_training_command_never_imports_mlflow(songs, prefect_server, tmp_path):
    source, corpus = songs
    home = tmp_path / "home"
    home.mkdir()
    script = textwrap.dedent(
        f"""
        import sys
        from charflow.cli import main
        code = main({["train", str(source), "--name", corpus, *CLI_TINY]!r})
        print("exit", code, "mlflow imported:", any(m == "mlflow" or m.startswith("mlflow.") for m in sys.modules))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(CHARFLOW_HOME=str(home), PREFECT_API_URL=prefect_server, PYTHONPATH=str(REPO))
    env.pop("PREFECT_HOME", None)

    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=home, capture_output=True, text=True, timeout=300
    )

    assert done.stdout.strip().splitlines()[-1] == "exit 0 mlflow imported: False", done.stderr


def test_mlflow_log_model_without_a_tracking_uri_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    from charflow.cli import main

    monkeypatch.delenv(tracking.TRACKING_URI, raising=False)
    monkeypatch.setenv("CHARFLOW_HOME", str(tmp_path / "home"))

    assert main(["train", "--mlflow-log-model"]) == 1

    assert capsys.readouterr().err == (
        "charflow: error: --mlflow-log-model uploads the model to MLflow, but MLFLOW_TRACKING_URI is not set: set it "
        "to your tracking server, or leave --mlflow-log-model out\n"
    )
    assert not (tmp_path / "home").exists()
    assert tracking.LOG_MODEL not in os.environ

"""Shared fixtures. CHARFLOW_HOME points at a session folder before anything imports Prefect."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from charflow.serve import ServeError, wait_healthy
from tests import scheduling
from tests.helpers import free_port
from tests.sharing import remember, shared_service, stop_process

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One OpenMP thread for each worker's torch and its commands' (they inherit it): the workers already fill the
    # cores, and two threads a process on two cores wait on each other (a training step 10x slower; the same
    # numbers). Set before anything imports torch.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="charflow-tests-"))
os.environ["CHARFLOW_HOME"] = str(_SESSION_HOME)
os.environ.pop("PREFECT_API_URL", None)
# A developer's own MLflow server is not the tests' (tests/flows/test_tracking.py starts one).
for _name in ("MLFLOW_TRACKING_URI", "CHARFLOW_MLFLOW_LOG_MODEL"):
    os.environ.pop(_name, None)
os.environ["PREFECT_HOME"] = str(_SESSION_HOME / "prefect")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Each test's home server stops with the last command that used it, as a one-shot command's used to.
os.environ["CHARFLOW_SERVER_IDLE"] = "0"

from flows.home import configure  # noqa: E402

configure()

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CHARFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
LYRICS_ZIP = SHARED_DATA / "jaychou_lyrics.txt.zip"


# Under pytest-xdist (addopts: -n auto --dist loadgroup --no-loadscope-reorder), the longest tests first, so that
# no worker is left with one at the end (seconds on 2 cores: `pytest --durations=20`), then the other slow ones.
LONGEST_FIRST = [
    "tests/flows/test_fidelity.py",
    "tests/charflow/test_faults.py",
    "tests/charflow/test_serve.py",
    "tests/flows/test_dask.py",
    "tests/artifacts/test_remote.py",
    "tests/flows/test_ddp.py",
    "tests/charflow/test_gate_cli.py",
    "tests/flows/test_tracking.py",
    "tests/artifacts/test_decisions.py",
    "tests/flows/test_sweep.py",
    "tests/charflow/test_runs_cli.py",
    "tests/flows/test_secure.py",
    "tests/charflow/test_serve_pools.py",
    "tests/charflow/test_sweep_cli.py",
]
# Session fixtures too costly to build on every worker: the tests that use one run on one worker.
ONE_WORKER = ["two_versions"]


def pytest_configure(config):
    if config.getoption("dist", "no") == "loadgroup" and not os.environ.get("PYTEST_XDIST_WORKER"):
        scheduling.name_groups_file()


def pytest_unconfigure(config):
    if scheduling.VARIABLE in os.environ and not os.environ.get("PYTEST_XDIST_WORKER"):
        scheduling.remove_groups_file()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """`-n auto`: a worker more than the cores, as tests wait on servers and commands a good part of their time
    (2 cores: 3 workers keep them 180% busy, 2 workers 140%); at most 8, each holding torch and Prefect."""
    return min(len(os.sched_getaffinity(0)) + 1, 8)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    return scheduling.GroupScheduling(config, log) if config.getoption("dist") == "loadgroup" else None


def pytest_collection_modifyitems(config, items):
    """Under xdist, tests that share a module-scoped fixture or a costly session one run on one worker, in their
    order (a module's fixture is built once; test_serve's tests follow one another); the longest go first."""
    if scheduling.VARIABLE not in os.environ or not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    for item in items:
        group = next((name for name in ONE_WORKER if name in item.fixturenames), None)
        if group is None:
            fixtures = item._fixtureinfo.name2fixturedefs.values()
            if any(defs[-1].scope == "module" for defs in fixtures):
                group = item.nodeid.split("::")[0]
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))

    def rank(item) -> tuple[int, bool]:
        module = item.nodeid.split("::")[0]
        first = LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)
        return first, item.get_closest_marker("slow") is None

    items.sort(key=rank)
    scheduling.write_groups(items)


@pytest.fixture(scope="session")
def lyrics_zip() -> Path:
    if not LYRICS_ZIP.is_file():
        pytest.fail(f"the lyrics corpus is missing: expected {LYRICS_ZIP} (../shared/data beside the repo)")
    return LYRICS_ZIP


@pytest.fixture(scope="session")
def lyrics_text(lyrics_zip, tmp_path_factory) -> str:
    from tasks.fetch import fetch
    from tasks.ingest import IngestParams, ingest, read_members

    fetched = fetch(str(lyrics_zip), tmp_path_factory.mktemp("downloads"))
    return ingest(read_members(fetched, IngestParams()), IngestParams())


@pytest.fixture(scope="session")
def book_text(lyrics_text) -> str:
    """The book's cleaning, written out as the notebook does it."""
    return lyrics_text.replace("\n", " ").replace("\r", " ")[:10000]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh CHARFLOW_HOME store for one test (Prefect's own home stays the session's)."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("CHARFLOW_HOME", str(path))
    return path


def _seeded_folder() -> str:
    """A folder for Prefect's test harness, its database already a copy of the migrated template (the harness's
    server would otherwise migrate an empty one: 5 CPU seconds on every xdist worker)."""
    from charflow import server_database

    folder = tempfile.mkdtemp()
    server_database.seed(f"{server_database.SQLITE_PREFIX}{folder}/prefect-test.db")
    return folder


@pytest.fixture(scope="session")
def prefect_harness():
    import prefect.testing.utilities as harness
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    made_by, harness.mkdtemp = harness.mkdtemp, _seeded_folder  # the harness's own folder, named "prefect-test.db"
    try:
        with (
            harness.prefect_test_harness(server_startup_timeout=180),
            temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        ):
            yield
    finally:
        harness.mkdtemp = made_by


def _start_prefect_server(prefect_home: Path) -> dict:
    from charflow import server_database

    server_database.seed(f"{server_database.SQLITE_PREFIX}{prefect_home / 'prefect.db'}")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    with (prefect_home / "server.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_healthy(url, proc)
    except ServeError as exc:
        proc.kill()
        pytest.fail(f"prefect server did not start ({exc}): {(prefect_home / 'server.log').read_text()[-2000:]}")
    return {"url": url, "pid": remember(proc)}


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real Prefect server on a free loopback port, for commands run as subprocesses (one for every xdist
    worker of the session)."""
    with shared_service(
        "prefect-server", tmp_path_factory, _start_prefect_server, lambda held: stop_process(held["pid"])
    ) as held:
        yield held["url"]


@pytest.fixture(scope="session")
def book_prepared(lyrics_zip, tmp_path_factory):
    """The book's corpus prepared without Prefect in a session store: (runner, Prepared)."""
    from flows.pipeline import plain_runner, prepare
    from tasks.fetch import resolve_source

    runner = plain_runner(tmp_path_factory.mktemp("book-store"))
    return runner, prepare(runner, resolve_source(str(lyrics_zip), "jaychou"))


TINY = {
    "batch_size": 4,
    "num_steps": 8,
    "epochs": 2,
    "model": "rnn",
    "hidden": 16,
    "optimizer": "adam",
    "lr": 0.01,
    "pred_period": 1,
    "pred_chars": 5,
}


@pytest.fixture(scope="session")
def two_versions(lyrics_text, tmp_path_factory, prefect_harness):
    """Two versions of one corpus, each prepared, batched and trained by the train flow (under Prefect)."""
    from flows.train import train

    home = tmp_path_factory.mktemp("two-versions-home")
    old = os.environ.get("CHARFLOW_HOME")
    os.environ["CHARFLOW_HOME"] = str(home)
    try:
        corpus = tmp_path_factory.mktemp("corpora") / "songs"
        corpus.mkdir()
        (corpus / "a.txt").write_text(lyrics_text[:3000], encoding="utf-8")
        first = train(source=str(corpus), **TINY)
        (corpus / "a.txt").write_text(lyrics_text[:3000] + "☃☃☃ snow", encoding="utf-8")
        second = train(source=str(corpus), **TINY)
    finally:
        os.environ["CHARFLOW_HOME"] = old or str(_SESSION_HOME)
    return {"home": home, "root": home / "store", "first": first, "second": second}


def _start_moto(folder: Path) -> dict:
    from tests.services import start_moto

    endpoint, proc = start_moto(folder / "moto.log")
    return {"endpoint": endpoint, "pid": remember(proc)}


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """One moto S3 server for the session, all its xdist workers (each test takes its own bucket)."""
    with shared_service("moto", tmp_path_factory, _start_moto, lambda held: stop_process(held["pid"])) as held:
        yield held["endpoint"]


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """One throwaway PostgreSQL cluster for the session, all its xdist workers (each test takes its own
    database)."""
    from tests.services import start_postgres, stop_postgres

    with shared_service("postgres", tmp_path_factory, lambda _: start_postgres(), stop_postgres) as held:
        yield held["url"]


def _unique_name(request) -> str:
    """A bucket or database name of the test's own: services outlive a test, so no two tests share one."""
    import hashlib
    import re

    readable = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    return f"{readable}-{hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:6]}-{os.getpid()}"


@pytest.fixture
def catalog_database(request, postgres_url) -> str:
    """A fresh database on the session's PostgreSQL cluster, for one test: its URL."""
    from tests.services import create_database

    return create_database(postgres_url, _unique_name(request).replace("-", "_"))


@pytest.fixture
def shared_backends(request, s3_endpoint, catalog_database, monkeypatch):
    """CHARFLOW_STORE_URL and CHARFLOW_CATALOG_URL set to a fresh bucket and database on the real servers."""
    from tests.helpers import environment_of
    from tests.services import S3_ENV, create_bucket

    name = _unique_name(request)
    create_bucket(s3_endpoint, name)
    env = {
        **S3_ENV,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "CHARFLOW_STORE_URL": f"s3://{name}/charflow",
        "CHARFLOW_CATALOG_URL": catalog_database,
    }
    with environment_of(monkeypatch, env):
        yield env


@pytest.fixture
def shared_folder_backends(tmp_path, catalog_database, monkeypatch):
    """CHARFLOW_STORE_URL set to a fresh folder that every machine of the test mounts (file:///PATH), and
    CHARFLOW_CATALOG_URL to a fresh database."""
    from tests.helpers import environment_of

    folder = tmp_path / "shared-folder"
    folder.mkdir()
    env = {"CHARFLOW_STORE_URL": folder.as_uri(), "CHARFLOW_CATALOG_URL": catalog_database}
    with environment_of(monkeypatch, env):
        yield env


@pytest.fixture(params=["s3", "folder"])
def any_shared_backends(request):
    """The shared backends with each kind of shared store in turn: an S3 bucket, then a shared folder."""
    return request.getfixturevalue("shared_backends" if request.param == "s3" else "shared_folder_backends")


@pytest.fixture
def cli(capsys):
    """`charflow ARGS` in this process: (exit code, stdout, stderr); argparse's exits included."""
    from charflow.cli import main

    def run(*args):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit:  # argparse
            code = exit.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def cli_on(cli):
    """`charflow ARGS` in this process on CHARFLOW_HOME `home`, recorded on the Prefect server `api_url`: what
    `tests.helpers.run_cli` gives a command process, for tests whose process boundary is not what they test
    (a command's own process is 2 to 5 CPU seconds of imports and Prefect start-up)."""

    def run(home: Path, api_url: str, *args):
        from prefect.settings import PREFECT_API_URL, temporary_settings

        home.mkdir(parents=True, exist_ok=True)
        with temporary_settings({PREFECT_API_URL: api_url}), pytest.MonkeyPatch.context() as patch:
            patch.setenv("CHARFLOW_HOME", str(home))
            return cli(*args)

    return run

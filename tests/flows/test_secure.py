"""The multi-machine set-up's locks, on loopback with real processes: a Prefect server started with an auth
string refuses a client without it (or with another), and takes one with it; a Dask scheduler with mutual TLS
refuses a client without the cluster's certificate, and runs a task for one with it. Each refusal names the
setting to fix, and no output shows the auth string."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from charflow.serve import ServeError, check_credentials
from flows.cluster import ComputeError, check, security
from tests.helpers import environment_of, free_port

ROOT = Path(__file__).resolve().parents[2]
# Every kind of character an auth string may hold where it is printed or split: none may show anywhere.
AUTH = "charflow:Pa55#w/rd?x=1&y@z%"


def charflow(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "CHARFLOW_HOME": str(home), "CHARFLOW_SERVER_IDLE": "120", **env}
    for name in ("PREFECT_HOME", "PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING"):
        if name not in env:
            environ.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "charflow.cli", *args], env=environ, cwd=home.parent, capture_output=True, text=True
    )


def api(url: str, path: str, auth: str | None, body: dict | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/{path}", data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.slow  # a home server and one flow run: 25-55 s on 2 shared cores
def test_a_prefect_server_with_an_auth_string_refuses_clients_without_it(tmp_path, lyrics_text):
    home = tmp_path / "home"
    home.mkdir()
    song = tmp_path / "song.txt"
    song.write_text(lyrics_text[:800], "utf-8")
    try:
        # The home's server, started with the server's setting; this command is its client (as charflow serve's
        # deploy commands and worker are).
        made = charflow(home, "prepare", str(song), "--json", PREFECT_SERVER_API_AUTH_STRING=AUTH)
        assert made.returncode == 0, made.stderr
        record = json.loads((home / "prefect" / "server.json").read_text())
        url = record["url"]
        assert api(url, "health", None)[0] == 200  # open to anyone, as for a load balancer's probe
        assert api(url, "admin/version", None)[0] == 401
        assert api(url, "admin/version", "charflow:wrong")[0] == 401
        assert api(url, "admin/version", AUTH)[0] == 200

        # Another machine's command, pointed at it: refused before any work without the string, or with another.
        fix = "set PREFECT_API_AUTH_STRING to the server's auth string (PREFECT_SERVER_API_AUTH_STRING where it runs)"
        other = tmp_path / "other"
        other.mkdir()
        refused = charflow(other, "prepare", str(song), PREFECT_API_URL=url)
        assert refused.returncode != 0
        assert refused.stderr.strip() == (
            f"charflow: error: the Prefect server at {url} refused the credentials (401: no PREFECT_API_AUTH_STRING); "
            + fix
        )
        wrong = charflow(other, "prepare", str(song), PREFECT_API_URL=url, PREFECT_API_AUTH_STRING="charflow:wrong")
        assert wrong.stderr.strip() == (
            f"charflow: error: the Prefect server at {url} refused the credentials (401: a wrong "
            "PREFECT_API_AUTH_STRING); " + fix
        )
        assert not (other / "store").exists()
        # The home's own command without either setting: told, not given a second server.
        bare = charflow(home, "server", "status")
        assert bare.stderr.strip() == refused.stderr.strip()
        # charflow serve's check before it deploys: the worker's environment gets the server's string.
        check_credentials(url, {"PREFECT_SERVER_API_AUTH_STRING": AUTH}, own_server=True)
        with pytest.raises(ServeError, match="refused the credentials"):
            check_credentials(url, {"PREFECT_SERVER_API_AUTH_STRING": AUTH})  # another machine's: not sent

        # With it: the answer from the store is recorded there as a flow run (charflow's own REST calls).
        taken = charflow(home, "prepare", str(song), PREFECT_API_URL=url, PREFECT_API_AUTH_STRING=AUTH)
        assert taken.returncode == 0, taken.stderr
        assert "recorded as a flow run in state Cached" in taken.stderr
        status, body = api(url, "flow_runs/filter", AUTH, {})
        assert status == 200
        assert sorted(run["state_name"] for run in json.loads(body)) == ["Cached", "Completed"]
        for result in (made, refused, wrong, bare, taken):
            assert AUTH not in result.stdout + result.stderr
            assert base64.b64encode(AUTH.encode()).decode() not in result.stdout + result.stderr
        assert AUTH not in (home / "prefect" / "server.json").read_text()
    finally:
        charflow(home, "server", "stop")


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    """A `dask scheduler` and one `dask worker` with mutual TLS on 127.0.0.1, their certificates made by
    scripts/make_certs.sh; and a client certificate from another CA."""
    root = tmp_path_factory.mktemp("tls")
    certs, stranger = root / "certs", root / "stranger"
    for folder, names in ((certs, ["scheduler", "worker", "client"]), (stranger, ["client"])):
        subprocess.run(["bash", str(ROOT / "scripts" / "make_certs.sh"), str(folder), *names], check=True)
    port = free_port()
    address = f"tls://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "dask"]

    def tls(name: str) -> list[str]:
        return ["--tls-ca-file", str(certs / "ca.pem"), "--tls-cert", str(certs / f"{name}.pem")] + [
            "--tls-key",
            str(certs / f"{name}-key.pem"),
        ]

    commands = [
        [*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--protocol", "tls", *tls("scheduler")],
        [*dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--name", "tls-worker", *tls("worker")],
    ]
    procs = []
    try:
        for n, command in enumerate(commands):
            with (root / f"{n}.log").open("w") as log:
                procs.append(subprocess.Popen([*command, "--no-dashboard"], stdout=log, stderr=subprocess.STDOUT))
        from distributed import Client

        with Client(address, timeout=60, set_as_default=False, security=tls_security(certs, "client")) as client:
            client.wait_for_workers(1, timeout=60)
        yield {"address": address, "certs": certs, "stranger": stranger}
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def tls_security(folder: Path, name: str):
    from distributed.security import Security

    return Security(
        tls_ca_file=str(folder / "ca.pem"),
        tls_client_cert=str(folder / f"{name}.pem"),
        tls_client_key=str(folder / f"{name}-key.pem"),
        require_encryption=True,
    )


def certificates(folder: Path, ca: Path | None = None) -> dict[str, str]:
    return {
        "CHARFLOW_DASK_TLS_CA": str(ca or folder / "ca.pem"),
        "CHARFLOW_DASK_TLS_CERT": str(folder / "client.pem"),
        "CHARFLOW_DASK_TLS_KEY": str(folder / "client-key.pem"),
    }


SHARED = {"CHARFLOW_STORE_URL": "s3://bucket/charflow", "CHARFLOW_CATALOG_URL": "postgresql://u@127.0.0.1/c"}


def test_a_tls_scheduler_refuses_a_client_without_the_clusters_certificate(tls_cluster, monkeypatch):
    from distributed import Client

    address = tls_cluster["address"]
    monkeypatch.setattr("flows.cluster._answered", set())  # each check connects
    for name in ("CHARFLOW_DASK_TLS_CA", "CHARFLOW_DASK_TLS_CERT", "CHARFLOW_DASK_TLS_KEY"):
        monkeypatch.delenv(name, raising=False)
    with environment_of(monkeypatch, SHARED):
        # No certificate: charflow refuses before connecting, naming the setting.
        with pytest.raises(ComputeError) as missing:
            check(address)
        assert str(missing.value) == (
            f"CHARFLOW_DASK_ADDRESS={address} is tls:// but CHARFLOW_DASK_TLS_CA is not set: a scheduler with mutual "
            "TLS refuses a client without its CA; set CHARFLOW_DASK_TLS_CA (scripts/make_certs.sh makes the files)"
        )
        # The scheduler itself: a plain connection is hung up on.
        with pytest.raises(OSError, match="Connection reset by peer"):
            Client(address.replace("tls://", "tcp://"), timeout=5, set_as_default=False)
        with pytest.raises(ComputeError, match="closed the connection .* takes only tls://: set CHARFLOW_DASK_ADDRESS"):
            check(address.replace("tls://", "tcp://"))
    # A certificate of another authority, whichever CA this side trusts: refused in the handshake, by name.
    fix = (
        "set CHARFLOW_DASK_TLS_CERT and CHARFLOW_DASK_TLS_KEY to a certificate and key signed by the cluster's CA, "
        "and CHARFLOW_DASK_TLS_CA to that CA's certificate (scripts/make_certs.sh)"
    )
    stranger = tls_cluster["stranger"]
    for ca in (stranger / "ca.pem", tls_cluster["certs"] / "ca.pem"):
        with environment_of(monkeypatch, {**SHARED, **certificates(stranger, ca)}):
            with pytest.raises(ComputeError) as refused:
                check(address)
            message = str(refused.value)
            assert message.startswith(f"the Dask scheduler at CHARFLOW_DASK_ADDRESS={address} and this client did not")
            assert message.endswith(fix)


def test_a_tls_scheduler_runs_a_clients_task_with_the_clusters_certificate(tls_cluster, monkeypatch):
    from distributed import Client

    from flows.compute import ConfiguredTaskRunner

    address = tls_cluster["address"]
    monkeypatch.setattr("flows.cluster._answered", set())
    with environment_of(
        monkeypatch, {**SHARED, **certificates(tls_cluster["certs"]), "CHARFLOW_DASK_ADDRESS": address}
    ):
        check()  # answers, with its worker
        tls = security()
        assert tls is not None
        assert tls.require_encryption
        with Client(address, timeout=10, set_as_default=False, security=tls) as client:
            assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6
        runner = ConfiguredTaskRunner().duplicate()
        assert type(runner).__name__ == "DaskTaskRunner"
        assert runner.client_kwargs["security"].tls_client_cert == str(tls_cluster["certs"] / "client.pem")
        # Certificates with a plain address would go unused: refused, not ignored.
        with pytest.raises(
            ComputeError, match="CHARFLOW_DASK_TLS_CA, CHARFLOW_DASK_TLS_CERT, CHARFLOW_DASK_TLS_KEY set"
        ):
            check(address.replace("tls://", "tcp://"))


@pytest.fixture
def postgres_tls(tmp_path):
    """A PostgreSQL cluster on 127.0.0.1 that takes TLS connections with a password only (hostssl, scram-sha-256),
    its certificate from scripts/make_certs.sh: (URL without sslmode, the CA's file, the password)."""
    from tests.services import _as_postgres, postgres_bin

    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed: .ci/run installs Debian's postgresql")
    root = Path(tempfile.mkdtemp(prefix="charflow-pgtls-", dir="/tmp"))  # the postgres user traverses /tmp
    certs, password = root / "certs", "Pa55#w/rd?x=1&y@z%"
    subprocess.run(["bash", str(ROOT / "scripts" / "make_certs.sh"), str(certs), "127.0.0.1"], check=True)
    (root / "password").write_text(password + "\n")
    if os.geteuid() == 0:
        for path in [root, *root.rglob("*")]:
            shutil.chown(path, "postgres", "postgres")
    data, port = root / "data", free_port()
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "charflow", "-A", "scram-sha-256"]
    subprocess.run(_as_postgres([*initdb, f"--pwfile={root / 'password'}"]), check=True, capture_output=True)
    (data / "pg_hba.conf").write_text("local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n")
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=on "
        f"-c ssl_cert_file={certs}/127.0.0.1.pem -c ssl_key_file={certs}/127.0.0.1-key.pem"
    )
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data)]
    subprocess.run(_as_postgres([*pg_ctl, "-o", options, "-l", str(root / "log"), "start", "-w"]), check=True)
    try:
        yield f"postgresql://charflow@127.0.0.1:{port}/postgres", certs / "ca.pem", password
    finally:
        subprocess.run(_as_postgres([*pg_ctl, "stop", "-m", "fast", "-w"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_the_catalog_on_postgresql_with_a_password_and_verify_full(postgres_tls, tmp_path):
    url, ca, password = postgres_tls
    verified = f"{url}?sslmode=verify-full&sslrootcert={ca}"
    (tmp_path / "store").mkdir()

    def ls(catalog: str, pgpassword: str | None) -> subprocess.CompletedProcess:
        env = {"CHARFLOW_STORE_URL": f"file://{tmp_path}/store", "CHARFLOW_CATALOG_URL": catalog}
        return charflow(tmp_path / "home", "inspect", "ls", **env, **({"PGPASSWORD": pgpassword} if pgpassword else {}))

    (tmp_path / "home").mkdir()
    pgpass = "give the password in ~/.pgpass (or PGPASSWORD), or fix CHARFLOW_CATALOG_URL's user"
    refused = {
        ("no password supplied", pgpass): ls(verified, None),
        ("password authentication failed", pgpass): ls(verified, "not-the-password"),
        # no hostssl line takes a plain connection
        ("no encryption", "set sslmode (e.g. ?sslmode=verify-full) in CHARFLOW_CATALOG_URL as the server requires"): ls(
            f"{url}?sslmode=disable", password
        ),
    }
    for (reason, fix), result in refused.items():
        assert result.returncode == 1
        line = result.stderr.strip()
        assert line.startswith("charflow: error: cannot reach the catalog database postgresql://charflow@"), line
        assert reason in line
        assert line.endswith(fix), line
    taken = ls(verified, password)
    assert taken.returncode == 0, taken.stderr
    for result in (*refused.values(), taken):
        assert password not in result.stdout + result.stderr


def test_a_flow_runs_its_tasks_on_the_tls_cluster(tls_cluster, monkeypatch, prefect_harness):
    from distributed import get_worker
    from prefect import flow, task

    from flows.compute import ConfiguredTaskRunner

    @task
    def where() -> str:
        return get_worker().name

    @flow(task_runner=ConfiguredTaskRunner())
    def on_the_cluster() -> str:
        return where.submit().result()

    monkeypatch.setattr("flows.cluster._answered", set())
    env = {**SHARED, **certificates(tls_cluster["certs"]), "CHARFLOW_DASK_ADDRESS": tls_cluster["address"]}
    with environment_of(monkeypatch, env):
        assert on_the_cluster() == "tls-worker"

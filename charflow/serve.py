"""`charflow serve`: the work pool, the deployments of prefect.yaml and a worker in the foreground, on
PREFECT_API_URL's server or on this home's (charflow.home_server: started on --port unless it runs already,
shared with the home's commands, kept up while serving). Ctrl-C or SIGTERM stops the worker; the home's server
stops once idle."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from artifacts.secrets import redact
from charflow.children import die_with_this_process
from tasks.errors import CharflowError

POOL_VARIABLE = "CHARFLOW_POOL"  # prefect.yaml's work pool: "{{ $CHARFLOW_POOL }}", set by serve
LEGACY_POOL = "charflow-local"  # the one pool of every home before pools were named for their home
PREFECT = [sys.executable, "-m", "prefect"]
# Prefect's basic auth: the server refuses every API call (its health check aside) without this string.
AUTH_STRING = "PREFECT_API_AUTH_STRING"  # what a client sends
SERVER_AUTH_STRING = "PREFECT_SERVER_API_AUTH_STRING"  # what a server started here requires


class ServeParams(BaseModel):
    """Where `charflow serve` listens and keeps Prefect's records."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    port: int = Field(4200, ge=1, le=65535, description="the server's port on 127.0.0.1")
    database: str | None = Field(
        None,
        description="Prefect's database: postgresql+asyncpg://USER@HOST:PORT/DB (default: "
        "PREFECT_SERVER_DATABASE_CONNECTION_URL, else SQLite under CHARFLOW_HOME)",
    )


class ServeError(CharflowError):
    """The server, the pool or the worker could not be started."""


def project_root() -> Path:
    root = Path(__file__).resolve().parents[1]
    if not (root / "prefect.yaml").is_file():
        raise ServeError(f"no prefect.yaml in {root}: run charflow serve from a checkout of charflow")
    return root


def auth_string(environ: Mapping[str, str] | None = None, own_server: bool = False) -> str | None:
    """The auth string a client sends: PREFECT_API_AUTH_STRING; to a server this machine starts (`own_server`),
    else the one that server requires."""
    environ = os.environ if environ is None else environ
    return environ.get(AUTH_STRING) or (environ.get(SERVER_AUTH_STRING) if own_server else None) or None


def api_headers(environ: Mapping[str, str] | None = None, own_server: bool = False) -> dict[str, str]:
    """The headers Prefect's own client would send: basic auth from the auth string, else a Prefect Cloud key."""
    environ = os.environ if environ is None else environ
    if auth := auth_string(environ, own_server):
        return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
    if key := environ.get("PREFECT_API_KEY"):
        return {"Authorization": f"Bearer {key}"}
    return {}


def refused(api_url: str, code: int, sent: bool) -> ServeError:
    """The one line for a server that refused this client's credentials (the auth string itself never shown)."""
    return ServeError(
        f"the Prefect server at {redact(api_url)} refused the credentials ({code}: {'a wrong' if sent else 'no'} "
        f"{AUTH_STRING}); set {AUTH_STRING} to the server's auth string ({SERVER_AUTH_STRING} where it runs)"
    )


def api_get(
    api_url: str, path: str, timeout: float = 5.0, environ: Mapping[str, str] | None = None, own_server: bool = False
) -> bytes:
    """GET `path` of the API with this client's credentials; a 401/403 raises `refused`'s error."""
    headers = api_headers(environ, own_server)
    request = urllib.request.Request(f"{api_url.rstrip('/')}/{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise refused(api_url, exc.code, sent=bool(headers)) from None
        raise


def check_credentials(api_url: str, environ: Mapping[str, str] | None = None, own_server: bool = False) -> None:
    """Refuse, before any work, a server that will not take this client's credentials (its health check is
    open to anyone: it says nothing about them)."""
    api_get(api_url, "admin/version", environ=environ, own_server=own_server)


def pool_name(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """This home's work pool and whose it is: `charflow-` and 8 hex digits of the sha256 of CHARFLOW_STORE_URL
    when set (the machines sharing a store and catalog are one team: one pool, whose workers take any of its
    runs), else of this machine's name and the resolved CHARFLOW_HOME (two machines' homes at one path stay two
    pools). A worker takes only its pool's runs, so one home's runs never write into another's."""
    from artifacts.settings import environment

    settings = environment(environ)
    if settings.store_url:
        owner = f"the shared store {redact(settings.store_url.rstrip('/'))}"
        identity = "store " + settings.store_url.rstrip("/")
    else:
        owner = f"the home {socket.gethostname()}:{settings.home}"
        identity = f"home {socket.gethostname()}:{settings.home}"
    return "charflow-" + hashlib.sha256(identity.encode()).hexdigest()[:8], owner


def planned(root: Path, pool: str, environ: Mapping[str, str]) -> dict[str, str]:
    """prefect.yaml's deployments, 'FLOW/NAME', with the pool each goes to once deployed with CHARFLOW_POOL=`pool`
    (the flows are named as their functions: flows/params.py's flat_flow)."""
    import yaml

    config = yaml.safe_load((root / "prefect.yaml").read_text(encoding="utf-8"))
    values = {**environ, POOL_VARIABLE: pool}

    def resolved(name: str) -> str:  # `prefect deploy`'s "{{ $VAR }}", from the environment, an unset one kept
        return re.sub(r"{{\s*\$(\w+)\s*}}", lambda m: values.get(m[1], m[0]), name)

    return {
        f"{d['entrypoint'].rsplit(':', 1)[1].replace('_', '-')}/{d['name']}": resolved(d["work_pool"]["name"])
        for d in config["deployments"]
    }


def foreign(existing: Mapping[str, str | None], wanted: Mapping[str, str], movable: set[str]) -> str | None:
    """The first deployment that deploying `wanted` ({'FLOW/NAME': pool}) would move off another home's pool,
    given the server's `existing` ({'FLOW/NAME': its pool}, absent: none there): deployments are only created or
    updated in place, except those on a `movable` pool (the legacy pool on this home's own server)."""
    for name, pool in wanted.items():
        there = existing.get(name, pool)
        if there != pool and there not in movable:
            return name
    return None


def existing_deployments(api_url: str, names: list[str], environ: Mapping[str, str]) -> dict[str, str | None]:
    """The server's deployments of those names, each with its work pool's name."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = json.loads(api_get(api_url, f"deployments/name/{name}", environ=environ))["work_pool_name"]
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
    return found


def existing_pool_type(api_url: str, pool: str, environ: Mapping[str, str]) -> str | None:
    try:
        return json.loads(api_get(api_url, f"work_pools/{pool}", environ=environ))["type"]
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
        return None


def claim(api_url: str, root: Path, env: dict[str, str], pool: str, owner: str, own_server: bool) -> None:
    """Refuse, before creating anything, a deployment of prefect.yaml that another home's pool holds, or a pool of
    this name that is not a process pool; then create the pool if missing (an existing one is never overwritten:
    other machines of the team may work on it)."""
    wanted = planned(root, pool, env)
    existing = existing_deployments(api_url, list(wanted), env)
    movable = {LEGACY_POOL} if own_server else set()
    if name := foreign(existing, wanted, movable):
        raise ServeError(
            f"deployment {name} on the Prefect server at {redact(api_url)} runs on work pool {existing[name]!r}, "
            f"another home's, not {pool!r} (of {owner}); serve moves no one's deployments: share that home's "
            f"CHARFLOW_STORE_URL to work on its pool, serve on this home's own server (unset PREFECT_API_URL), or, "
            f"if no one serves it any more, delete it (prefect deployment delete '{name}') and serve again"
        )
    for name, there in existing.items():
        if there in movable and there != wanted[name]:
            print(f"charflow serve: {name} moves from the pool {there} to {wanted[name]}", flush=True)
    kind = existing_pool_type(api_url, pool, env)
    if kind is None:
        made = subprocess.run(
            [*PREFECT, "work-pool", "create", pool, "--type", "process"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        kind = existing_pool_type(api_url, pool, env)  # another machine of the team may have made it meanwhile
        if kind is None:
            raise ServeError(f"could not create the work pool {pool}: {made.stderr.strip()[-300:]}")
    if kind != "process":
        raise ServeError(
            f"the work pool {pool!r} on the Prefect server at {redact(api_url)} is a {kind!r} pool, not a process "
            f"pool; delete it (prefect work-pool delete {pool}) and serve again"
        )


def wait_healthy(api_url: str, process: subprocess.Popen | None, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.read().strip() == b"true":
                    return
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            raise ServeError(f"the Prefect server exited with status {process.returncode}")
        time.sleep(0.5)
    raise ServeError(f"the Prefect server at {api_url} was not healthy after {timeout:.0f} s")


def _stop(process: subprocess.Popen | None, name: str) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        print(f"charflow serve: {name} did not stop in 30 s; killing it", file=sys.stderr)
        process.kill()
        process.wait()


def check_database(url: str) -> None:
    """Refuse, before starting anything, a database URL Prefect cannot use or a database that does not answer."""
    import psycopg

    if not url.startswith("postgresql+asyncpg://"):
        raise ServeError(f"--database {redact(url)!r} is not postgresql+asyncpg://USER@HOST:PORT/DB; fix --database")
    try:
        psycopg.connect(url.replace("+asyncpg", "", 1), connect_timeout=10).close()
    except psycopg.ProgrammingError:  # its message may quote a piece of the password: not shown
        raise ServeError(
            f"--database {redact(url)!r} is not a URL libpq can parse; percent-encode the password's special "
            "characters (# as %23, / as %2F, ? as %3F, @ as %40) and fix --database"
        ) from None
    except psycopg.OperationalError as exc:
        raise ServeError(
            f"cannot reach Prefect's database {redact(url)} ({str(exc).strip()[:200]}); check that it is up and fix "
            "--database"
        ) from None


def serve(port: int = 4200, database: str | None = None) -> int:
    from charflow import home_server

    root = project_root()
    env = {**os.environ, "PWD": str(root)}
    api_url = os.environ.get("PREFECT_API_URL")
    database = database or os.environ.get("PREFECT_SERVER_DATABASE_CONNECTION_URL")
    with ExitStack() as stack:
        if not api_url:
            if database:  # PostgreSQL instead of SQLite: several workers, and no "database is locked"
                check_database(database)
                running = home_server.read_record(home_server.prefect_home())
                if running is not None and home_server.serves_this_home(running, home_server.prefect_home()):
                    raise ServeError(
                        f"this home's Prefect server already runs at {running.url}, on its own database; stop it "
                        "first (charflow server stop) to serve on --database"
                    )
                print(f"charflow serve: Prefect's database is {redact(database)}", flush=True)
            # This home's server (started on --port unless one runs already), in use while serving.
            record = stack.enter_context(
                home_server.attached(port, {"PREFECT_SERVER_DATABASE_CONNECTION_URL": database} if database else {})
            )
            if not record.url.endswith(f":{port}/api"):
                print(f"charflow serve: this home's Prefect server runs already, at {record.url}", flush=True)
            api_url = env["PREFECT_API_URL"] = record.url
            if auth := auth_string(env, own_server=True):  # the deploy commands and the worker are its clients
                env[AUTH_STRING] = auth
        return _serve_on(api_url, root, env, own_server=not os.environ.get("PREFECT_API_URL"))


def _serve_on(api_url: str, root: Path, env: dict[str, str], own_server: bool = False) -> int:
    """The work pool, the deployments and a worker on the server at `api_url`, until stopped."""
    worker = None
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        wait_healthy(api_url, None)
        check_credentials(api_url, env)
        print(f"charflow serve: Prefect API at {api_url}", flush=True)
        pool, owner = pool_name(env)
        env[POOL_VARIABLE] = pool
        print(f"charflow serve: work pool {pool} (of {owner})", flush=True)
        claim(api_url, root, env, pool, owner, own_server)
        subprocess.run([*PREFECT, "--no-prompt", "deploy", "--all"], env=env, cwd=root, check=True)
        worker = subprocess.Popen(
            [*PREFECT, "worker", "start", "--pool", pool], env=env, cwd=root, preexec_fn=die_with_this_process()
        )
        print(f"charflow serve: worker started on pool {pool}; Ctrl-C stops it", flush=True)
        worker.wait()
        return 0 if stopping else worker.returncode
    except KeyboardInterrupt:
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        # The worker before the server (the home's: it stops when idle), so that it does not lose it mid-run.
        _stop(worker, "the worker")

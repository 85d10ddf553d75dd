"""`charflow serve`'s work pool: one per home, or per shared store; the deployments of another home's pool are
never moved, checked on a real Prefect server through its REST API."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from charflow.serve import LEGACY_POOL, foreign, pool_name
from tests.helpers import charflow_serve

DEPLOYMENTS = ["prepare/default", "train/default", "sweep/default", "reingest/daily"]


def test_a_pool_is_named_for_the_shared_store_else_for_the_machine_and_home(tmp_path):
    store = {"CHARFLOW_STORE_URL": "s3://team/charflow"}
    assert pool_name({**store, "CHARFLOW_HOME": str(tmp_path / "a")}) == (
        "charflow-5fc9c175",
        "the shared store s3://team/charflow",
    )
    assert pool_name({**store, "CHARFLOW_HOME": str(tmp_path / "b")})[0] == "charflow-5fc9c175"
    assert pool_name({"CHARFLOW_STORE_URL": "s3://team/charflow/"})[0] == "charflow-5fc9c175"
    first, owner = pool_name({"CHARFLOW_HOME": str(tmp_path / "a")})
    assert re.fullmatch(r"charflow-[0-9a-f]{8}", first)
    assert owner.endswith(f":{tmp_path / 'a'}")
    assert pool_name({"CHARFLOW_HOME": str(tmp_path / "b")})[0] != first


def test_only_deployments_on_no_other_pool_are_deployed():
    wanted = {"train/default": "charflow-mine", "prepare/default": "charflow-mine"}
    assert foreign({}, wanted, set()) is None  # none there yet
    assert foreign({"train/default": "charflow-mine"}, wanted, set()) is None  # updated in place
    assert foreign({"prepare/default": "charflow-other"}, wanted, set()) == "prepare/default"
    # The pool of earlier releases: moved on this home's own server only.
    assert foreign({"train/default": LEGACY_POOL}, wanted, {LEGACY_POOL}) is None
    assert foreign({"train/default": LEGACY_POOL}, wanted, set()) == "train/default"


def api(url, path, body=None):
    request = urllib.request.Request(
        f"{url}/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def pools_of(url):
    return {pool["name"]: pool["id"] for pool in api(url, "work_pools/filter", {})}


def deployed(url):
    return {name: api(url, f"deployments/name/{name}")["work_pool_name"] for name in DEPLOYMENTS}


def serve_on(url, root, env, started=True, timeout=180):
    """`charflow serve` of another home against the server at `url`: until its worker starts (then stopped), or
    until it exits; its output."""
    env = {**env, "PREFECT_API_URL": url, "PREFECT_HOME": str(root / "prefect")}
    log = root / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "charflow.cli", "serve"], env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + timeout
    while proc.poll() is None and not (started and "worker started" in log.read_text()):
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"charflow serve did not {'start' if started else 'stop'}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    return proc.returncode, log.read_text()


@pytest.mark.slow
def test_homes_on_one_server_keep_to_their_pools(tmp_path):
    """Home A serves (its own server); home B, of A's shared store, serves on A's server: one pool, B's worker on
    it; home C, of no store, is refused before it creates anything; A serving again reuses its pool."""
    store = tmp_path / "store"
    store.mkdir()
    team = {**os.environ, "CHARFLOW_STORE_URL": f"file://{store}", "CHARFLOW_SERVER_IDLE": "120"}
    roots = {name: tmp_path / name for name in "abc"}
    for root in roots.values():
        root.mkdir()
    a_env = {**team, "CHARFLOW_HOME": str(roots["a"] / "home")}
    pool, owner = pool_name({**team, "CHARFLOW_HOME": "/elsewhere"})
    try:
        with charflow_serve(roots["a"], a_env) as serving:
            url = serving["env"]["PREFECT_API_URL"]
            assert f"work pool {pool} (of the shared store file://{store})" in (roots["a"] / "serve.log").read_text()
            assert deployed(url) == dict.fromkeys(DEPLOYMENTS, pool)
            ids = pools_of(url)
            assert pool in ids

            code, log = serve_on(url, roots["b"], {**team, "CHARFLOW_HOME": str(roots["b"] / "home")})
            assert code == 0, log[-3000:]
            assert f"worker started on pool {pool}" in log

            alone = {**os.environ, "CHARFLOW_HOME": str(roots["c"] / "home")}
            code, log = serve_on(url, roots["c"], alone, started=False)
            theirs = pool_name(alone)[0]
            assert code == 1, log[-3000:]
            assert log.strip().splitlines()[-1] == (
                f"charflow: error: deployment prepare/default on the Prefect server at {url} runs on work pool "
                f"{pool!r}, another home's, not {theirs!r} (of {pool_name(alone)[1]}); serve moves no one's "
                "deployments: share that home's CHARFLOW_STORE_URL to work on its pool, serve on this home's own "
                "server (unset PREFECT_API_URL), or, if no one serves it any more, delete it (prefect deployment "
                "delete 'prepare/default') and serve again"
            )
            assert pools_of(url) == ids  # no pool of C's
            assert deployed(url) == dict.fromkeys(DEPLOYMENTS, pool)
        with charflow_serve(roots["a"], a_env):
            assert "this home's Prefect server runs already" in (roots["a"] / "serve.log").read_text()
            assert pools_of(url) == ids  # the same pool, not made anew
            assert deployed(url) == dict.fromkeys(DEPLOYMENTS, pool)
    finally:
        env = {**a_env, "PREFECT_HOME": str(roots["a"] / "prefect")}
        subprocess.run([sys.executable, "-m", "charflow.cli", "server", "stop"], env=env, capture_output=True)

"""Two machines, one shared state, end to end: a Prefect server on PostgreSQL, a deployment run on one home, the
CLI on another home finding every stage as a cache hit, all against the real object store and database."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import charflow_serve, run_cli
from tests.services import S3_ENV, create_bucket, create_database

pytestmark = pytest.mark.slow
PREFECT = [sys.executable, "-m", "prefect"]


@pytest.fixture(scope="module")
def shared_env(s3_endpoint, postgres_url):
    create_bucket(s3_endpoint, "two-machines")
    return {
        **S3_ENV,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "CHARFLOW_STORE_URL": "s3://two-machines/charflow",
        "CHARFLOW_CATALOG_URL": create_database(postgres_url, "two_machines_catalog"),
    }


@pytest.fixture(scope="module")
def served_on_postgres(tmp_path_factory, postgres_url, shared_env):
    root = tmp_path_factory.mktemp("served-pg")
    database = create_database(postgres_url, "two_machines_prefect").replace("postgresql://", "postgresql+asyncpg://")
    env = {**os.environ, **shared_env, "CHARFLOW_HOME": str(root / "home-a")}
    with charflow_serve(root, env, "--database", database) as serving:
        yield {"root": root, "database": database, **serving}


def test_a_deployment_on_one_machine_is_a_cache_hit_on_another(served_on_postgres, shared_env, lyrics_zip, tmp_path):
    env, root = served_on_postgres["env"], served_on_postgres["root"]
    assert "Prefect's database is postgresql+asyncpg://postgres@" in (root / "serve.log").read_text()
    run = subprocess.run(
        [*PREFECT, "deployment", "run", "prepare/default", "--param", f"source={lyrics_zip}", "--watch"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "Completed" in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]
    # Machine B: its own home, the same URLs, no Prefect server of A's.
    other = {k: v for k, v in shared_env.items()}
    for variable, value in other.items():
        os.environ[variable] = value
    try:
        made = run_cli("prepare", str(lyrics_zip), "--json", home=tmp_path / "home-b")
        listed = run_cli("inspect", "ls", "--json", home=tmp_path / "home-c")
        vocab_key = json.loads(made.stdout)["stages"]["vocab"]["key"]
        lineage = run_cli("inspect", "lineage", vocab_key[:12], "--json", home=tmp_path / "home-d")
        verified = run_cli("inspect", "verify", "--json", home=tmp_path / "home-d")
    finally:
        for variable in other:
            os.environ.pop(variable, None)
    assert made.returncode == 0, made.stderr[-3000:]
    stages = json.loads(made.stdout)["stages"]
    assert all(stage["cache_hit"] for stage in stages.values()), stages
    assert json.loads(made.stdout)["version"] == 1
    shown = json.loads(listed.stdout)
    assert shown["backend"] == "store: s3://two-machines/charflow; catalog: " + shared_env["CHARFLOW_CATALOG_URL"]
    assert {a["key"] for a in shown["artifacts"]} >= {s["key"] for s in stages.values()}
    assert [v["version"] for v in shown["corpora"]["jaychou_lyrics"]] == [1]
    # A machine that holds nothing yet reads lineage through the shared store, and verifies what it fetched.
    assert lineage.returncode == 0, lineage.stderr[-2000:]
    assert [a["stage"] for a in json.loads(lineage.stdout)][:3] == ["vocab", "clean", "ingest"]
    assert verified.returncode == 0, verified.stdout[-2000:]
    assert json.loads(verified.stdout)["missing"] == [], verified.stdout[-2000:]

"""The flows' fixtures: the 2-worker Dask cluster (tests/flows/test_dask.py, test_sweep.py), one per module."""

import re

import pytest

from tests.helpers import environment_of
from tests.services import S3_ENV, create_bucket, create_database, dask_cluster


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory, s3_endpoint, postgres_url):
    """`dask scheduler` and two workers on 127.0.0.1, each with its own home, sharing a bucket and a catalog of
    the module's own."""
    name = re.sub(r"[^a-z0-9]+", "-", request.module.__name__.rsplit(".", 1)[-1].lower()).strip("-")
    root = tmp_path_factory.mktemp("dask")
    create_bucket(s3_endpoint, f"dask-cluster-{name}")
    env = {
        **S3_ENV,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "CHARFLOW_STORE_URL": f"s3://dask-cluster-{name}/charflow",
        "CHARFLOW_CATALOG_URL": create_database(postgres_url, f"dask_catalog_{name.replace('-', '_')}"),
    }
    with dask_cluster(root, env) as running:
        yield {**running, "env": env}


@pytest.fixture
def on_cluster(cluster, home, monkeypatch, prefect_harness):
    with environment_of(monkeypatch, {**cluster["env"], "CHARFLOW_DASK_ADDRESS": cluster["address"]}):
        yield cluster

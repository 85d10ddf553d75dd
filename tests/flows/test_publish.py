"""Every flow run shows its artifacts in Prefect's UI under stable keys."""

import json

import pytest

from flows.publish import markdown_table


def test_ui_artifacts_are_published(two_versions):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    wanted = [f"{stage}-summary" for stage in two_versions["second"].stages]
    wanted += ["vocab-top-symbols", "training-metrics", "training-samples"]
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=wanted)))
    assert set(wanted) <= {a.key for a in found}
    top = next(a for a in found if a.key == "vocab-top-symbols")
    table = json.loads(top.data) if isinstance(top.data, str) else top.data
    assert table[0]["token"] == " "
    summary = next(a for a in found if a.key == "vocab-summary")
    assert "vocab.parquet" in summary.data and "| parameter | value |" in summary.data
    metrics = next(a for a in found if a.key == "training-metrics")
    rows = json.loads(metrics.data) if isinstance(metrics.data, str) else metrics.data
    assert [r["epoch"] for r in rows] == [1, 2]


@pytest.mark.parametrize(
    "rows,expected",
    [
        ([], ""),
        ([{"a": 1, "b": "x|y"}], "| a | b |\n| --- | --- |\n| 1 | x\\|y |"),
    ],
)
def test_markdown_tables_escape_pipes(rows, expected):
    assert markdown_table(rows) == expected

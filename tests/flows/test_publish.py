"""Every flow run shows its artifacts in Prefect's UI under stable keys."""

import json

import pytest

from flows.publish import markdown_table


def test_ui_artifacts_are_published(two_versions):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    stages = two_versions["second"].stages
    wanted = [f"{stage}-summary" for stage in stages]
    wanted += ["vocab-top-symbols", "training-metrics", "training-samples"]
    found, only = [], ArtifactFilter(key=ArtifactFilterKey(any_=wanted))
    with get_client(sync_client=True) as client:  # every page: the server answers 200 at a time
        while page := client.read_artifacts(artifact_filter=only, offset=len(found), limit=200):
            found += page
    assert set(wanted) <= {a.key for a in found}

    def beside(stage: str, artifact_key: str):
        """The artifact published with this corpus's `stage` summary: the keys are shared by every corpus on
        the server (other tests publish theirs), the run that published the summary is not."""
        summary = next(a for a in found if a.key == f"{stage}-summary" and stages[stage].key in a.data)
        run = (summary.flow_run_id, summary.task_run_id)
        return summary, next(a for a in found if a.key == artifact_key and (a.flow_run_id, a.task_run_id) == run)

    summary, top = beside("vocab", "vocab-top-symbols")
    table = json.loads(top.data) if isinstance(top.data, str) else top.data
    assert table[0]["token"] == " "
    assert "vocab.parquet" in summary.data and "| parameter | value |" in summary.data
    _, metrics = beside("train", "training-metrics")
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

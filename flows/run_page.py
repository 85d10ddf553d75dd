"""What a flow run's own page says in Prefect's UI: a name with the corpus, its version, the last stage and its
short key; corpus and version tags; the parameters as resolved (defaults and the device included, not only
what was passed); and one summary that links every stage's artifacts."""

from __future__ import annotations

from typing import Any

from prefect import get_client
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.settings import PREFECT_UI_URL
from pydantic import BaseModel

from artifacts.store import ArtifactRef
from flows.publish import Published
from flows.run_words import (
    SUMMARY_DESCRIPTION,
    SUMMARY_KEY,
    corpus_prefix,
    run_tags,
    run_title,
    summary_markdown,
)


def _update(**fields: Any) -> None:
    if flow_run.id is None:  # not inside a flow run: no page to write on
        return
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.id, **fields)


def show_parameters(parameters: dict[str, Any]) -> None:
    """The run's parameters replaced by the resolved ones, so that its Parameters tab shows what it used; and
    its random name by the corpus's, where the run has one (the version follows once it is registered)."""
    resolved = {k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for k, v in parameters.items()}
    if resolved.get("name"):
        _update(parameters=resolved, name=run_name(resolved["name"], None))
    else:
        _update(parameters=resolved)


def run_name(corpus: str | None, version: int | None, last: ArtifactRef | None = None) -> str:
    return run_title(flow_run.flow_name or "run", corpus, version, last)


def name_run(corpus: str | None, version: int | None, last: ArtifactRef | None = None) -> None:
    tags = {*flow_run.tags, *run_tags(corpus, version)}
    _update(name=run_name(corpus, version, last), tags=sorted(tags))


def artifact_link(artifact_id: Any) -> str:
    """The artifact's page in the UI: a full URL where the UI's address is known, else a path on it."""
    return f"{(PREFECT_UI_URL.value() or '').rstrip('/')}/artifacts/artifact/{artifact_id}"


def summarize_run(
    corpus: str | None, version: int | None, stages: dict[str, ArtifactRef], published: dict[str, Published]
) -> None:
    """One artifact on the run itself: each stage's key, whether it was cached, and links to its artifacts."""
    links = {stage: [(label, artifact_link(id_)) for label, id_ in made] for stage, made in published.items()}
    create_markdown_artifact(
        key=corpus_prefix(corpus) + SUMMARY_KEY,
        markdown=summary_markdown(run_name(corpus, version), stages, links),
        description=SUMMARY_DESCRIPTION,
    )

"""A command answered from the store, recorded on the Prefect server PREFECT_API_URL names: a flow run of its flow,
completed in state "Cached", with its parameters, tags and run summary (no task ran). Through the server's REST
API, without importing Prefect (two seconds): with a server named, every command stays a flow run there."""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from typing import Any

from artifacts.store import ArtifactRef
from flows.run_words import SUMMARY_DESCRIPTION, SUMMARY_KEY, corpus_prefix, run_tags, run_title, summary_markdown

TIMEOUT_S = 10.0
CACHED_MESSAGE = "every stage was in the store: answered from it, no task ran"


class NotRecorded(Exception):
    """The server refused or did not answer: the command runs its flow instead (Prefect's client knows more)."""


def _headers() -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    # As Prefect's client: the server's auth string first (PREFECT_SERVER_API_AUTH_STRING's value), else a key.
    if auth := os.environ.get("PREFECT_API_AUTH_STRING"):
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    elif key := os.environ.get("PREFECT_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    return headers


def _post(api_url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{api_url.rstrip('/')}/{path}", data=json.dumps(body).encode(), headers=_headers(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise NotRecorded(f"{path}: {exc}") from None


def record_answer(
    api_url: str,
    flow: str,
    parameters: dict[str, Any],
    stages: dict[str, ArtifactRef],
    corpus: str | None = None,
    version: int | None = None,
) -> str:
    """The flow run recorded, by the name a run of the flow would have had."""
    title = run_title(flow, corpus, version, list(stages.values())[-1])
    flow_id = _post(api_url, "flows/", {"name": flow})["id"]
    run = _post(
        api_url,
        "flow_runs/",
        {
            "flow_id": flow_id,
            "name": title,
            "parameters": json.loads(json.dumps(parameters, default=str)),
            "tags": run_tags(corpus, version),
            "state": {"type": "COMPLETED", "name": "Cached", "message": CACHED_MESSAGE},
        },
    )
    _post(
        api_url,
        "artifacts/",
        {
            "key": corpus_prefix(corpus) + SUMMARY_KEY,
            "type": "markdown",
            "data": summary_markdown(run_title(flow, corpus, version), stages, {}),
            "description": SUMMARY_DESCRIPTION,
            "flow_run_id": run["id"],
        },
    )
    return title

"""Every flow run shows its artifacts in Prefect's UI under stable keys."""

import base64
import json
import re

import pytest

from flows.publish import corpus_prefix, markdown_table, sample_json, shown_value, visible
from tests.helpers import task_runs_of


def test_ui_artifacts_are_published(two_versions):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    stages = two_versions["second"].stages
    corpus = "songs-"  # the corpus (a folder named songs) starts its keys: its own timeline in the UI
    wanted = [f"{corpus}{stage}-summary" for stage in stages]
    wanted += [f"{corpus}{key}" for key in ("vocab-top-symbols", "vocab-frequency-chart", "training-metrics")]
    wanted += [f"{corpus}training-perplexity-chart", f"{corpus}training-samples"]
    found, only = [], ArtifactFilter(key=ArtifactFilterKey(any_=wanted))
    with get_client(sync_client=True) as client:  # every page: the server answers 200 at a time
        while page := client.read_artifacts(artifact_filter=only, offset=len(found), limit=200):
            found += page
    assert set(wanted) <= {a.key for a in found}

    def beside(stage: str, artifact_key: str):
        """The artifact published with this version's `stage` summary (both versions share the corpus's keys;
        the run that published the summary is this version's)."""
        summary = next(a for a in found if a.key == f"{corpus}{stage}-summary" and stages[stage].key in a.data)
        run = (summary.flow_run_id, summary.task_run_id)
        key = f"{corpus}{artifact_key}"
        return summary, next(a for a in found if a.key == key and (a.flow_run_id, a.task_run_id) == run)

    summary, top = beside("vocab", "vocab-top-symbols")
    table = json.loads(top.data) if isinstance(top.data, str) else top.data
    assert table[0]["token"] == "␣"  # the space, visible
    assert "vocab.parquet" in summary.data
    assert "| parameter | value |" in summary.data
    assert "| order | codepoint |" in summary.data
    assert "None" not in summary.data  # bare strings, no None
    encoded, _ = beside("encode", "encode-summary")
    assert re.search(r'^"first_indices": \[\d+, \d+, ', encoded.data, re.M)  # one line, not sixty
    for stage, chart, png in (
        ("vocab", "vocab-frequency-chart", "frequency.png"),
        ("train", "training-perplexity-chart", "perplexity.png"),
    ):
        _, shown = beside(stage, chart)
        inline = re.search(r"!\[[^]]+\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", shown.data)
        assert inline
        assert base64.b64decode(inline.group(1)) == (stages[stage].path / png).read_bytes()
    _, metrics = beside("train", "training-metrics")
    rows = json.loads(metrics.data) if isinstance(metrics.data, str) else metrics.data
    assert [r["epoch"] for r in rows] == [1, 2]
    # Its task runs: named by stage and short key, tagged by corpus, stage, sampler and model.
    stage_runs = {f"{stage} {stages[stage].key[:12]}" for stage in ("vocab", "batches", "train")}
    runs = task_runs_of(summary.flow_run_id, until=lambda runs: stage_runs <= {run.name for run in runs})
    named = {run.name: set(run.tags) for run in runs}
    assert {"stage:vocab", "corpus:songs"} <= named[f"vocab {stages['vocab'].key[:12]}"]
    assert {"stage:batches", "sampler:random"} <= named[f"batches {stages['batches'].key[:12]}"]
    assert {"stage:train", "model:rnn", "corpus:songs"} <= named[f"train {stages['train'].key[:12]}"]


def test_a_corpus_name_in_prefects_key_alphabet():
    assert corpus_prefix("songs") == "songs-"
    assert corpus_prefix("jaychou_lyrics") == "jaychou-lyrics-"
    assert corpus_prefix(None) == ""
    # More than _ changed: two names could meet ("Jay Chou", "jay-chou"), so a hash of the name tells them apart.
    assert re.fullmatch(r"jay-chou-[0-9a-f]{6}-", corpus_prefix("Jay Chou"))
    assert corpus_prefix("Jay Chou") != corpus_prefix("JAY CHOU")
    assert corpus_prefix("jay-chou") == "jay-chou-"
    assert re.fullmatch(r"corpus-[0-9a-f]{6}-", corpus_prefix("周杰伦"))


def test_whitespace_parameters_and_samples_read_plainly():
    assert [visible(t) for t in (" ", "\n", "\r", "\u3000", "好", "a b")] == ["␣", "⏎", "U+000D", "U+3000", "好", "a b"]
    assert [shown_value(v) for v in ("random", "", 35, None, ["\n", " "])] == [
        "random",
        '""',
        "35",
        "null",
        '["\\n", " "]',
    ]
    view = {"first_indices": list(range(60)), "decoded": "想要有直升机"}
    assert sample_json(view, "ab" * 32).splitlines() == [
        '"first_indices": [' + ", ".join(map(str, range(60))) + "]",
        '"decoded": "想要有直升机"',
    ]
    long = {f"k{i}": "x" * 400 for i in range(6)}
    lines = sample_json(long, "0123456789abcdef").splitlines()
    assert len(lines) == 4
    assert lines[-1] == "… 3 more, cut here: `charflow inspect show 0123456789ab` shows all"


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([], ""),
        ([{"a": 1, "b": "x|y"}], "| a | b |\n| --- | --- |\n| 1 | x\\|y |"),
    ],
)
def test_markdown_tables_escape_pipes(rows, expected):
    assert markdown_table(rows) == expected


def test_the_runs_own_page_names_tags_parameters_and_links_every_stage(two_versions):
    """The top-level run: named by corpus, version, last stage and key; tagged; its parameters resolved; one
    summary that links each stage's artifacts of this very run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterName

    stages = two_versions["second"].stages
    name = f"train songs v2 · train {stages['train'].key[:12]}"
    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])), limit=200
        )
    assert {"corpus:songs", "version:2"} <= set(run.tags)
    params = run.parameters
    assert params["name"] == "songs"
    assert params["device"] == "cpu"
    assert params["sampler"] == "random"
    # as passed
    assert params["epochs"] == 2
    assert params["hidden"] == 16
    assert params["optimizer"] == "adam"
    # defaults
    assert params["max_chars"] == 10000
    assert params["lr"] == 0.01
    assert params["precision"] == "fp32"
    (summary,) = [a for a in artifacts if a.key == "songs-run-summary"]
    assert summary.data.startswith("## train songs v2\n")
    linked = set(re.findall(r"/artifacts/artifact/([0-9a-f-]{36})\)", summary.data))
    # Every keyed artifact of the run (Prefect adds a keyless one of its own, for a persisted result).
    others = {str(a.id) for a in artifacts if a.key and a.key != "songs-run-summary"}
    assert linked == others
    assert len(linked) == len(stages) + 5  # a summary per stage, 2 vocab and 3 train extras
    for stage, ref in stages.items():
        assert f"| {stage} | `{ref.key[:12]}` |" in summary.data


EVIL = "<img src=x onerror=alert(1)>"


def test_user_strings_render_as_text_in_the_ui_markdown():
    """Was: corpus names, file names, parameters and samples went raw into the UI's markdown (the database held
    `## prepare <script>alert(1)</script> v1`), and text could close a code fence."""
    from artifacts.store import ArtifactRef
    from flows.run_words import code, fenced, run_title, summary_markdown, text

    assert text(f"prepare {EVIL} v1") == "prepare &lt;img src=x onerror=alert(1)&gt; v1"
    assert text("*bold* [link](http://x) _em_ jaychou_lyrics\nnext") == (
        r"\*bold\* \[link\](http://x) \_em\_ jaychou_lyrics next"
    )
    assert code("a`b") == "``a`b``"
    assert code("`x") == "`` `x ``"
    assert fenced("x\n```\ny") == "````\nx\n```\ny\n````"  # the inner fence cannot close the block
    page = summary_markdown(
        run_title("prepare", EVIL, 1), {"ingest": ArtifactRef(stage="ingest", key="k" * 64, path=".")}, {}
    )
    assert "<img" not in page
    assert "&lt;img" in page
    assert markdown_table([{"value": text("a|b")}]).splitlines()[-1] == r"| a\|b |"

"""The quality gate on scheduled re-ingestion, through `charflow reingest` on a real Prefect server: the first model
takes the alias (a version trained before --promote was given is decided when it is), a version is decided once,
a better model is promoted, a deliberately worse one (a tiny learning rate) rejected with the champion left in
place and the run Completed saying so; and every refusal of the gate's settings, in one line, before any work."""

from __future__ import annotations

import json

import pytest

from artifacts import aliases
from artifacts.catalog import JsonlCatalog
from artifacts.decisions import decisions_of
from charflow.cli import main
from flows.run_words import text

SMALL = ("--max-chars", "3000", "--epochs", "3", "--hidden", "32", "--val-fraction", "0.1", "--pred-period", "100")
GATE = ("--train", "--promote", "champion", *SMALL)


def reingest(cli_on, corpora, home, server, *args):
    code, out, err = cli_on(home, server, "reingest", str(corpora), *args, "--json")
    assert code == 0, err[-3000:]
    return json.loads(out), err


def last_run(server, corpora):
    """The last reingest run of `corpora` on the server: its final state, and its decision's markdown."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowFilter, FlowFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: server}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["reingest"])), limit=200)
        run = max((r for r in runs if r.parameters.get("sources") == [str(corpora)]), key=lambda r: r.start_time)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])), limit=200
        )
    (page,) = [a.data for a in artifacts if a.key == "songs-gate-decision"]
    return run.state, page


@pytest.mark.slow
def test_reingest_promotes_then_rejects_a_worse_model(cli_on, tmp_path, lyrics_text, prefect_server):
    corpora, home = tmp_path / "corpora", tmp_path / "home"
    corpora.mkdir()
    song = corpora / "songs.txt"
    song.write_text(lyrics_text[:3000], encoding="utf-8")
    catalog = JsonlCatalog(home / "store")

    # v1 trained without the gate, then decided when --promote is first given: no champion yet, so promoted.
    rows, _ = reingest(cli_on, corpora, home, prefect_server, "--train", *SMALL)
    assert [(r["status"], r["version"], "decision" in r) for r in rows] == [("new", 1, False)]
    rows, _ = reingest(cli_on, corpora, home, prefect_server, *GATE)
    first = rows[0]["decision"]
    assert (rows[0]["status"], first["verdict"], first["decided_now"], first["moved"]) == (
        "unchanged",
        "first",
        True,
        True,
    )
    assert first["held"] is None
    assert first["characters"] == 299  # v1's validation tail: its last 300 characters, all but the first predicted
    assert first["message"].startswith("champion of songs: promoted, the first model (no champion yet): model ")
    v1 = first["model"]
    # Decided once: the same command again has nothing to do.
    rows, _ = reingest(cli_on, corpora, home, prefect_server, *GATE)
    assert [(r["status"], "decision" in r) for r in rows] == [("unchanged", False)]

    # v2: one line changed, trained twice as long: better, promoted.
    song.write_text(lyrics_text[:1500] + "我" + lyrics_text[1501:3000], encoding="utf-8")
    rows, _ = reingest(cli_on, corpora, home, prefect_server, *GATE, "--epochs", "6")
    second = rows[0]["decision"]
    assert (rows[0]["status"], rows[0]["version"], second["verdict"], second["moved"]) == (
        "changed",
        2,
        "promoted",
        True,
    )
    assert second["champion"] == v1
    assert second["held"]["model"] == v1
    assert second["new"]["perplexity"] <= second["held"]["perplexity"] * 1.02
    assert second["characters"] == 299
    assert len(second["new"]["sample"]) == len(second["held"]["sample"]) == 2 + 50  # the prefix 分开 and 50 more
    v2 = second["model"]

    # v3: a tiny learning rate, a model far worse: rejected, the champion stays, the run Completed saying so.
    song.write_text(lyrics_text[:1500] + "你" + lyrics_text[1501:3000], encoding="utf-8")
    rows, _ = reingest(cli_on, corpora, home, prefect_server, *GATE, "--lr", "0.01")
    third = rows[0]["decision"]
    assert (rows[0]["version"], third["verdict"], third["moved"], third["champion"]) == (3, "rejected", False, v2)
    assert third["new"]["perplexity"] > third["held"]["perplexity"] * 1.02
    assert f"rejected, {v2[:12]} stays champion" in third["message"]
    state, decision_page = last_run(prefect_server, corpora)
    assert state.type.value == "COMPLETED"
    assert state.message.startswith("1 corpora looked at; champion of songs: rejected, ")
    assert decision_page.startswith(f"## rejected: songs v3, `champion`\n\n{text(third['message'])}")
    assert f"| new | `{third['model'][:12]}` (v3) |" in decision_page
    assert f"| champion | `{v2[:12]}` (v2) |" in decision_page

    # Decided again when asked, on a text of its own: ingested and cleaned as v3's corpus, every character of it.
    (tmp_path / "held-out.txt").write_text(lyrics_text[5000:5400], encoding="utf-8")
    eval_source = ("--eval-source", str(tmp_path / "held-out.txt"))
    rows, _ = reingest(cli_on, corpora, home, prefect_server, *GATE, "--lr", "0.01", "--redecide", *eval_source)
    again = rows[0]["decision"]
    assert (rows[0]["status"], again["version"], again["verdict"], again["decided_now"]) == (
        "unchanged",
        3,
        "rejected",
        True,
    )
    assert (again["start"], again["characters"]) == (0, again["end"] - 1)
    assert again["text"].startswith(f"{tmp_path / 'held-out.txt'} (clean ")
    assert again["text_key"] != third["text_key"]
    assert again["new"]["charged"] > 0  # unseen lyrics: characters v3's vocabulary lacks
    assert again["held"]["charged"] > 0

    entries = catalog.entries()
    assert aliases.aliases_of(entries) == {("songs", "champion"): v2}
    assert [m.model for m in aliases.moves_of(entries, "songs", "champion")] == [v1, v2]
    assert [(d.version, d.verdict) for d in decisions_of(entries, "songs")] == [
        (1, "first"),
        (2, "promoted"),
        (3, "rejected"),
        (3, "rejected"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--promote", "champion"], "--promote champion moves an alias to each new version's model: add --train"),
        (["--train", "--promote", "champion"], "keep the new version's tail with --val-fraction (e.g. 0.1), or give"),
        (["--train", "--promote", "v2", "--val-fraction", "0.1"], "'v2' names a version (latest, a number or v<num"),
        (["--train", "--promote", "no way", "--val-fraction", "0.1"], "'no way' is not an alias name"),
        (["--train", "--promote", "champion", "--val-fraction", "0.1", "--tolerance", "1.5"], "tolerance=1.5: Input"),
        (["--train", "--promote", "champion", "--val-fraction", "0.1", "--tolerance", "-1"], "tolerance=-1.0: Input"),
        (["--epochs", "3", "--hidden", "32"], "--epochs, --hidden shape the training: add --train"),
        (["--eval-source", "{tmp}/songs.txt"], "--eval-source is the text the quality gate compares models on: add"),
        (["--train", "--promote", "champion", "--eval-source", "{tmp}/missing.txt"], "missing.txt: no such file"),
    ],
)
def test_the_gates_settings_are_refused_in_one_line_before_the_home_is_made(
    tmp_path, monkeypatch, capsys, args, message
):
    home = tmp_path / "never-made"
    (tmp_path / "songs.txt").write_text("我们的歌" * 100, encoding="utf-8")
    monkeypatch.setenv("CHARFLOW_HOME", str(home))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["reingest", str(tmp_path / "songs.txt"), *[a.format(tmp=tmp_path) for a in args]]) in (1, 2)
    out, err = capsys.readouterr()
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert out == ""
    assert not home.exists()

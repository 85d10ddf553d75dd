"""Deployments run for real: `charflow serve` (a Prefect server, the pool, prefect.yaml, a worker), and
`prefect deployment run` from another process where its own checks or output are tested. Other runs are started,
and runs, logs and artifacts read, with Prefect's client (a `prefect` command each cost 2 CPU seconds)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

import pytest

from tests.helpers import charflow_serve, read_until, snapshot

pytestmark = pytest.mark.slow
PREFECT = [sys.executable, "-m", "prefect"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    home = root / "home"
    # PREFECT_LOGGING_LEVEL: what a user's runs log (the test session's own default is WARNING).
    env = {**os.environ, "CHARFLOW_HOME": str(home), "PREFECT_LOGGING_LEVEL": "INFO"}
    with charflow_serve(root, env) as serving:
        yield {"home": home, "root": root, **serving}


def deployment_run(served, name, *params, timeout=300):
    args = [a for p in params for a in ("--param", p)]
    result = subprocess.run(
        [*PREFECT, "deployment", "run", name, *args, "--watch", "--watch-timeout", str(timeout)],
        env=served["env"],
        cwd=served["root"],
        capture_output=True,
        text=True,
        timeout=timeout + 60,
    )
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", result.stdout)
    return result, run_id.group(1) if run_id else None


def run_deployed(served, name, timeout=300, **parameters):
    """The deployment run on the served worker, as `prefect deployment run NAME --watch` starts it, through
    Prefect's client: (its final state, its id)."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: served["env"]["PREFECT_API_URL"]}):
        run = run_deployment(name, parameters=parameters, timeout=timeout, poll_interval=1)
    return run.state, str(run.id)


@contextmanager
def client(served) -> Iterator:
    """Prefect's client of the served server."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: served["env"]["PREFECT_API_URL"]}), get_client(sync_client=True) as c:
        yield c


def state_message(served, run_id):
    with client(served) as c:
        return c.read_flow_run(UUID(run_id)).state.message


def artifact_versions(served, key):
    """The key's latest versions first, as `prefect artifact inspect KEY -o json` lists them."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with client(served) as c:
        found = c.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), sort=ArtifactSort.UPDATED_DESC, limit=10
        )
    return [artifact.model_dump(mode="json") for artifact in found]


def run_logs(served, run_id, until: tuple[str, ...] = (), timeout: float = 60.0) -> str:
    """Every log line of the run, in order, read until each pattern of `until` is in them: the run's process
    sends its last lines in the background, and its state may be final before they are stored."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    def read() -> str:
        lines: list[str] = []
        with client(served) as c:
            while page := c.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(run_id)])),
                sort=LogSort.TIMESTAMP_ASC,
                limit=200,
                offset=len(lines),
            ):
                lines += [log.message for log in page]
        return "\n".join(lines)

    return read_until(read, lambda logs: all(re.search(pattern, logs) for pattern in until), timeout, every=0.5)


def summary_of(served, run_id):
    """The reingest summary of that run: the daily schedule (03:00 UTC) may add its own run's meanwhile."""
    return next(v for v in artifact_versions(served, "reingest-summary") if v["flow_run_id"] == run_id)


def summary_rows(served, run_id):
    return json.loads(summary_of(served, run_id)["data"])


def test_train_deployment_runs_on_the_worker(served, lyrics_zip):
    state, run_id = run_deployed(
        served,
        "train/default",
        source=str(lyrics_zip),
        epochs=2,
        model="rnn",
        optimizer="adam",
        lr=0.01,
        hidden=32,
        sampler="consecutive",
    )
    assert state.is_completed(), state.message
    models = list((served["home"] / "store" / "train").iterdir())
    assert len(models) == 1
    assert (models[0] / "weights.pt").is_file()
    # charflow's own lines in the run's logs (what the UI's Logs tab shows): keys, cache, version, epochs.
    key = json.loads((models[0] / "_manifest.json").read_text())["key"]
    expected = (
        r"ingest  [0-9a-f]{12}  computed  chars=63282",
        r"corpus jaychou_lyrics v1 \(new version, sha256 [0-9a-f]{12}\)",
        rf"train   {key[:12]}  computed",
        r"epoch 2: perplexity [0-9.]+, [0-9,]+ tokens/s",
    )
    logs = run_logs(served, run_id, until=expected)
    for line in expected:
        assert re.search(line, logs), f"{line!r} not in the run's logs:\n{logs[-3000:]}"
    # The worker's own output, relayed from the run's process: a moment after the run's state, at most.
    computed = rf"train   {key[:12]}  computed"
    worker_log = read_until((served["root"] / "serve.log").read_text, lambda text: bool(re.search(computed, text)), 30)
    assert re.search(computed, worker_log)


def render(chromium, url, screenshot):
    """The page's DOM once the app has settled (virtual time), and a screenshot of it."""
    common = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--virtual-time-budget=20000",
    ]
    subprocess.run(
        [*common, "--window-size=1280,1000", f"--screenshot={screenshot}", url], capture_output=True, timeout=180
    )
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
    screenshot.with_suffix(".html").write_text(dom, encoding="utf-8")
    return dom


def test_a_browser_shows_the_runs_artifacts_chart_and_chinese(served):
    """After the train run above: headless Chromium (Debian's; .ci/run installs it) renders the run page and
    the chart and vocabulary artifacts; screenshots are kept in the test's folder."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("no chromium on this machine: .ci/run installs Debian's chromium and fonts-noto-cjk")
    base = served["env"]["PREFECT_API_URL"].removesuffix("/api")
    chart = artifact_versions(served, "jaychou-lyrics-training-perplexity-chart")[0]
    top = artifact_versions(served, "jaychou-lyrics-vocab-top-symbols")[0]
    shots = served["root"] / "screenshots"
    shots.mkdir(exist_ok=True)
    page = render(chromium, f"{base}/runs/flow-run/{chart['flow_run_id']}", shots / "run.png")
    assert "Completed" in page, page[-2000:]
    assert "Task runs" in page, page[-2000:]  # (the task runs' names are on a canvas)
    assert re.search(r"train jaychou_lyrics v1 · train [0-9a-f]{12}", page), page[-2000:]  # the run's name
    summary = artifact_versions(served, "jaychou-lyrics-run-summary")[0]
    assert summary["flow_run_id"] == chart["flow_run_id"]
    page = render(chromium, f"{base}/artifacts/artifact/{summary['id']}", shots / "summary.png")
    links = re.findall(rf'<a [^>]*href="{re.escape(base)}/artifacts/artifact/([0-9a-f-]{{36}})"', page)
    assert chart["id"] in links, page[-2000:]
    assert top["id"] in links, page[-2000:]
    assert len(links) == 6 + 5, page[-2000:]
    page = render(chromium, f"{base}/artifacts/artifact/{chart['id']}", shots / "chart.png")
    assert re.search(r'<img[^>]+src="data:image/png;base64,', page), page[-2000:]
    page = render(chromium, f"{base}/artifacts/artifact/{top['id']}", shots / "vocab.png")
    assert re.search(r"[\u4e00-\u9fff]", page), page[-2000:]
    assert "␣" in page, page[-2000:]
    assert all((shots / f"{name}.png").stat().st_size > 10_000 for name in ("run", "summary", "chart", "vocab"))


def test_user_text_renders_as_text_in_a_browser(served, tmp_path):
    """Was: corpus and file names and parameters went raw into the UI's markdown. A source file named as an
    HTML element and a markdown link, and a --replace rule writing it, render as text: no such element in the
    DOM."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("no chromium on this machine: .ci/run installs Debian's chromium and fonts-noto-cjk")
    # HTML (which the UI's renderer may drop on its own), and markdown that would make a link.
    evil = "<img src=x onerror=alert(1)> [click](https:evil.example)"
    folder = tmp_path / "evil"
    folder.mkdir()
    source = folder / f"{evil}.txt"
    source.write_text("some text, with x in it", encoding="utf-8")
    replace = json.dumps([{"old": "x", "new": evil, "regex": False}])
    result, run_id = deployment_run(
        served, "prepare/default", f"source={json.dumps(str(source))}", f"replacements={replace}"
    )
    assert result.returncode == 0, result.stdout[-3000:]
    request = urllib.request.Request(
        served["env"]["PREFECT_API_URL"] + "/artifacts/filter",
        data=json.dumps({"artifacts": {"flow_run_id": {"any_": [run_id]}}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        made = {a["key"]: a for a in json.loads(response.read()) if a["key"]}
    base = served["env"]["PREFECT_API_URL"].removesuffix("/api")
    pages = [key for key in made if key.endswith(("ingest-summary", "clean-summary", "run-summary"))]
    assert len(pages) == 3, sorted(made)
    for key in pages:
        dom = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--virtual-time-budget=20000",
                "--dump-dom",
                f"{base}/artifacts/artifact/{made[key]['id']}",
            ],
            capture_output=True,
            text=True,
            timeout=180,
        ).stdout
        assert "onerror=alert(1)" in dom, (key, dom[-2000:])  # shown, as text
        assert "[click](https:evil.example)" in dom, (key, dom[-2000:])
        assert not re.search(r"<img[^>]*onerror|<a[^>]*evil\.example", dom), (key, dom[-2000:])


def test_reingest_processes_only_what_is_new(served, tmp_path):
    corpora = tmp_path / "corpora"
    corpora.mkdir()
    (corpora / "first.txt").write_text("one corpus, a few words", encoding="utf-8")
    state, run_id = run_deployed(served, "reingest/daily", sources=[str(corpora)])
    assert state.is_completed(), state.message
    assert [(r["corpus"], r["status"], r["version"]) for r in summary_rows(served, run_id)] == [("first", "new", 1)]
    (corpora / "second.txt").write_text("another corpus", encoding="utf-8")
    state, run_id = run_deployed(served, "reingest/daily", sources=[str(corpora)])
    assert state.is_completed(), state.message
    rows = summary_rows(served, run_id)
    assert [(r["corpus"], r["status"], r["version"]) for r in rows] == [("first", "unchanged", 1), ("second", "new", 1)]
    assert rows[0]["keys"] == ""
    assert "ingest" in rows[1]["keys"]
    (corpora / "first.txt").write_text("one corpus, changed", encoding="utf-8")
    state, run_id = run_deployed(served, "reingest/daily", sources=[str(corpora)])
    assert [(r["corpus"], r["status"], r["version"]) for r in summary_rows(served, run_id)] == [
        ("first", "changed", 2),
        ("second", "unchanged", 1),
    ]


def test_the_daily_reingest_gates_its_models(served, tmp_path, lyrics_text):
    """The deployment's gate parameters: the first model takes the alias; the run's message and summary say so;
    an alias with no --train is a Failed run that says why."""
    corpora = tmp_path / "gated"
    corpora.mkdir()
    (corpora / "gated.txt").write_text(lyrics_text[:3000], encoding="utf-8")
    small = {"max_chars": 3000, "epochs": 2, "hidden": 16, "val_fraction": 0.1, "pred_period": 100}
    sources = [str(corpora)]
    state, run_id = run_deployed(served, "reingest/daily", sources=sources, train=True, promote="champion", **small)
    assert state.is_completed(), state.message
    assert state_message(served, run_id).startswith("1 corpora looked at; champion of gated: promoted, the first ")
    assert [(r["corpus"], r["decision"]) for r in summary_rows(served, run_id)] == [("gated", "first")]
    state, run_id = run_deployed(served, "reingest/daily", sources=sources, promote="champion")
    assert state.is_failed()
    assert "add --train" in state_message(served, run_id)


def test_overlapping_runs_on_one_corpus_make_one_version(served, tmp_path):
    corpora = tmp_path / "overlap"
    corpora.mkdir()
    (corpora / "shared.txt").write_text("the same corpus, twice at once", encoding="utf-8")
    command = [
        *PREFECT,
        "deployment",
        "run",
        "reingest/daily",
        "--param",
        f'sources=["{corpora}"]',
        "--watch",
        "--watch-timeout",
        "240",
    ]
    runs = [
        subprocess.Popen(command, env=served["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    catalog = (served["home"] / "store" / "catalog.jsonl").read_text().splitlines()
    versions = [json.loads(line) for line in catalog if '"shared"' in line and '"version"' in line]
    assert [e["version"] for e in versions if e["event"] == "version"] == [1]
    assert not list((served["home"] / "store" / ".staging").iterdir())


def test_an_invalid_parameter_fails_the_run_and_writes_nothing(served):
    store = served["home"] / "store"
    before = snapshot(store)
    result, run_id = deployment_run(served, "train/default", "batch_size=-1", "epochs=2")
    assert result.returncode == 1
    assert "Failed" in result.stdout
    assert "batch_size must be a positive integer, got -1" in state_message(served, run_id)
    result, run_id = deployment_run(served, "prepare/default", f"source={served['root']}/missing.txt")
    assert result.returncode == 1
    assert "missing.txt: no such file or directory" in state_message(served, run_id)
    # The nested shape of earlier releases: refused before a run exists, listing the flat parameters.
    result, run_id = deployment_run(served, "prepare/default", 'clean={"max_chars": 5}')
    assert run_id is None
    refused = " ".join(result.stdout.split())
    assert "specified but not found on the deployment: 'clean'" in refused
    assert "available on the deployment: 'source', 'name', 'sha256', 'errors'," in refused
    # A value outside a parameter's choices is refused before a run even exists.
    result, run_id = deployment_run(served, "train/default", "sampler=shuffled")
    assert result.returncode != 0
    assert run_id is None
    assert "shuffled" in result.stdout + result.stderr
    assert snapshot(store) == before


def test_the_ui_is_told_the_api_of_the_port_served(served):
    """`serve --port N`: the UI's settings point its browser at port N, not at Prefect's default 4200."""
    api_url = served["env"]["PREFECT_API_URL"]
    with urllib.request.urlopen(api_url.removesuffix("/api") + "/ui-settings", timeout=30) as response:
        settings = json.loads(response.read())
    assert settings["api_url"] == api_url
    assert not api_url.endswith(":4200/api")


def test_the_daily_reingest_without_a_corpora_folder_has_nothing_to_do(served):
    """The schedule's run on a fresh checkout (no ./corpora yet) completes and says why it did nothing."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "corpora").exists():
        pytest.skip(f"{checkout}/corpora exists: the daily run would ingest it")
    result, run_id = deployment_run(served, "reingest/daily")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Completed" in result.stdout, result.stdout[-3000:]
    assert summary_rows(served, run_id) == []
    described = summary_of(served, run_id)["description"]
    assert "nothing to ingest: there is no ./corpora folder" in described


def test_serve_stops_cleanly(served):
    proc = served["proc"]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == 0
    ps = subprocess.run(["ps", "-o", "pid=", "-g", str(proc.pid)], capture_output=True, text=True)
    assert ps.stdout.strip() == "", f"left running: {ps.stdout}"
    assert Path(served["root"] / "serve.log").read_text().count("stopped") >= 1

"""The API a command uses: a set PREFECT_API_URL must answer; otherwise its home's server, started once, shared,
stopped when idle, and never another home's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from charflow.home_server import check_reachable
from charflow.serve import ServeError
from tests.helpers import free_port


def test_a_closed_port_is_one_clear_line(prefect_server):
    check_reachable(prefect_server)
    url = f"http://127.0.0.1:{free_port()}/api"
    with pytest.raises(ServeError, match=f"cannot reach the Prefect server at PREFECT_API_URL={url} .*unset"):
        check_reachable(url)


def environment(home: Path, idle: float) -> dict[str, str]:
    env = {**os.environ, "CHARFLOW_HOME": str(home), "CHARFLOW_SERVER_IDLE": str(idle)}
    for name in ("PREFECT_HOME", "PREFECT_API_URL"):
        env.pop(name, None)
    return env


def charflow(home: Path, *args: str, idle: float = 0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "charflow.cli", *args],
        env=environment(home, idle),
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )


def status(home: Path) -> dict:
    result = charflow(home, "server", "status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def flow_runs(api_url: str) -> list[dict]:
    request = urllib.request.Request(
        f"{api_url}/flow_runs/filter", data=b"{}", headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def starts(home: Path) -> int:
    return (home / "prefect" / "server.log").read_text().count("starting on http://127.0.0.1:")


@pytest.fixture
def corpora(tmp_path, lyrics_text) -> list[Path]:
    made = []
    for i in range(4):
        (made := [*made, tmp_path / f"song{i}.txt"])[-1].write_text(lyrics_text[i * 500 : i * 500 + 800], "utf-8")
    return made


@pytest.mark.slow
def test_four_commands_at_once_on_a_new_home_share_one_server_later_ones_too_and_no_other_homes(tmp_path, corpora):
    home = tmp_path / "home"
    env = environment(home, idle=60)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "charflow.cli", "prepare", str(song), "--json"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for song in corpora
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    try:
        assert [p.returncode for p in procs] == [0] * 4, [err[-2000:] for _, err in outputs]
        assert sorted(json.loads(out)["corpus"] for out, _ in outputs) == ["song0", "song1", "song2", "song3"]
        assert starts(home) == 1
        running = status(home)
        assert running["running"] is True
        assert running["in_use"] is False
        assert (
            sorted(run["flow_id"] is not None and run["state_type"] for run in flow_runs(running["url"]))
            == ["COMPLETED"] * 4
        )
        song = tmp_path / "song4.txt"  # not yet stored: a run, where a stored one is answered without a server
        song.write_text(corpora[0].read_text("utf-8") + " and more", "utf-8")
        later = charflow(home, "prepare", str(song), idle=60)
        assert later.returncode == 0, later.stderr[-2000:]
        assert status(home)["url"] == running["url"]
        assert starts(home) == 1
        assert len(flow_runs(running["url"])) == 5
        # A record naming this server in another home (a recycled port, a copied home): the server is asked
        # whose it is, and that home starts its own.
        other = tmp_path / "other"
        (other / "prefect").mkdir(parents=True)
        ours = json.loads((home / "prefect" / "server.json").read_text())
        (other / "prefect" / "server.json").write_text(json.dumps({**ours, "prefect_home": str(other / "prefect")}))
        theirs = charflow(other, "prepare", str(corpora[1]))
        assert theirs.returncode == 0, theirs.stderr[-2000:]
        assert starts(other) == 1
        assert len(flow_runs(running["url"])) == 5  # nothing of the other home's was recorded here
        assert status(other)["running"] is False  # CHARFLOW_SERVER_IDLE=0: it went with the command
    finally:
        stopped = charflow(home, "server", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith("stopped the Prefect server at http://127.0.0.1:")
    assert status(home)["running"] is False
    assert not (home / "prefect" / "server.json").exists()


@pytest.mark.slow
def test_the_server_stops_when_idle_and_the_next_command_starts_another(tmp_path, corpora):
    home = tmp_path / "home"
    first = charflow(home, "prepare", str(corpora[0]), idle=10)
    assert first.returncode == 0, first.stderr[-2000:]
    assert status(home)["running"] is True
    deadline = time.monotonic() + 60
    while status(home)["running"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status(home)["running"] is False
    assert not (home / "prefect" / "server.json").exists()
    # The next command starts another; the log keeps both starts.
    second = charflow(home, "prepare", str(corpora[1]))
    assert second.returncode == 0, second.stderr[-2000:]
    assert starts(home) == 2


@pytest.mark.slow
def test_serve_uses_the_homes_running_server_and_keeps_it_in_use(tmp_path, corpora):
    from tests.helpers import charflow_serve

    home = tmp_path / "home"
    made = charflow(home, "prepare", str(corpora[0]), idle=120)
    assert made.returncode == 0, made.stderr[-2000:]
    url = status(home)["url"]
    try:
        with charflow_serve(home, environment(home, idle=120)):
            log = (home / "serve.log").read_text()
            assert f"this home's Prefect server runs already, at {url}" in log
            assert f"Prefect API at {url}" in log
            assert status(home)["in_use"] is True
            assert charflow(home, "server", "stop").returncode == 1  # refused while serve uses it
        assert status(home)["in_use"] is False
        assert status(home)["url"] == url  # serve stopped; the server stays until idle
        assert starts(home) == 1
    finally:
        charflow(home, "server", "stop")


def test_serve_on_a_port_another_server_holds_is_refused_and_touches_nothing(tmp_path):
    """Was: "Port P is already in use", then the work pool, the deployments and a worker on the server that held
    it (another home's, whose runs then wrote into that home). Here a stand-in answers Prefect's health check."""
    import http.server
    import threading

    seen: list[str] = []

    class Healthy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"true")

        def do_POST(self):  # noqa: N802
            self.do_GET()

        def log_message(self, *args):
            pass

    other = http.server.HTTPServer(("127.0.0.1", 0), Healthy)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        home = tmp_path / "home"
        served = charflow(home, "serve", "--port", str(other.server_address[1]))
    finally:
        other.shutdown()
    assert served.returncode != 0
    assert f"port {other.server_address[1]} is in use by another process" in served.stderr
    assert "choose another --port" in served.stderr
    assert seen == []  # not even a health check: nothing was asked of, or done to, the other server

"""The Prefect server of a home: started by the first command that needs one, shared by later and concurrent
commands and by `charflow serve`, stopped once nothing has used it for CHARFLOW_SERVER_IDLE seconds.

One server per Prefect home (PREFECT_HOME, CHARFLOW_HOME/prefect unless set), so one process migrates and
writes its database. Its files there:
- `server.json`: its URL, process id and home. A command attaches only to a server whose process lives and
  which says, when asked, that this is its home (a port recycled by another home's server is not it).
- `server.lock`: held while a server is started, attached to or stopped: concurrent commands start one.
- `server.users`: each command using the server holds a shared lock on it (the kernel frees it when the
  command dies, kill -9 included); its modification time is the last use. `charflow serve` holds it for as
  long as it serves, so a serving worker keeps the server up.
- `server.log`: every start's output, appended.

The server runs `python -m charflow.home_server`: Prefect's app (UI and services, as `prefect server start`)
under uvicorn, and a thread that stops it when idle. It is in a session of its own: Ctrl-C in a terminal
reaches the command, not the server the next command will use.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from artifacts.settings import environment
from charflow.serve import AUTH_STRING, ServeError, api_get, auth_string, check_credentials, wait_healthy

# A server whose starter did not record it this long after it answered was given up (a record of another
# server replaced its own, its starter died): it stops.
ORPHAN_AFTER = 60.0
# CHARFLOW_SERVER_IDLE=0: how long the server's own watch leaves the stop to the last command (it stops it).
WATCH_GRACE = 5.0


@dataclass(frozen=True)
class Record:
    """A running home server, as `server.json` holds it."""

    url: str
    pid: int
    prefect_home: str
    started: float


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or environment().home / "prefect").resolve()


def _file(name: str, folder: Path | None = None) -> Path:
    return (folder or prefect_home()) / f"server.{name}"


@contextmanager
def _flock(path: Path, how: int) -> Iterator[bool]:
    """`path` locked `how` (fcntl.LOCK_EX/LOCK_SH, with LOCK_NB: yields False when taken elsewhere)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, how)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # frees the lock


def read_record(folder: Path | None = None) -> Record | None:
    try:
        return Record(**json.loads(_file("json", folder).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _is_server_process(pid: int) -> bool:
    """The process lives and is a home server (a recycled process id is not)."""
    try:
        return b"charflow.home_server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def serves_this_home(record: Record, folder: Path, timeout: float = 5.0) -> bool:
    """The recorded server lives, answers, and names this home as its own."""
    if record.prefect_home != str(folder) or not _is_server_process(record.pid):
        return False
    try:  # a server started with PREFECT_SERVER_API_AUTH_STRING refuses a command without it: said, not restarted
        return json.loads(api_get(record.url, "admin/settings", timeout, own_server=True)).get("home") == str(folder)
    except (OSError, ValueError):
        return False


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _taken(port: int) -> bool:
    """Whether a process listens on 127.0.0.1:`port` (bound as the server binds: a socket in TIME_WAIT is not)."""
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _start(folder: Path, port: int | None, env: dict[str, str]) -> Record:
    """A new server for `folder`, healthy, recorded. The caller holds `server.lock`."""
    if port and _taken(port):
        # Prefect's server would say "already in use" and exit, while the one there answered our health
        # checks: work pools, deployments and a worker would then land on a server of another home.
        raise ServeError(
            f"port {port} is in use by another process (another home's Prefect server, say); choose another "
            "--port, or leave --port out for a free one"
        )
    port = port or _free_port()
    url = f"http://127.0.0.1:{port}/api"
    log_path = _file("log", folder)
    server_env = {
        **os.environ,
        **env,
        "PREFECT_HOME": str(folder),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        # The UI's browser calls the API at this port, not Prefect's default 4200.
        "PREFECT_UI_API_URL": url,
    }
    server_env.pop("PREFECT_API_URL", None)
    with log_path.open("a") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting on {url}\n")
        log.flush()
        process = subprocess.Popen(
            [sys.executable, "-m", "charflow.home_server", str(port)],
            env=server_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"))
    try:
        wait_healthy(url, process, timeout)
        if process.poll() is not None:  # what answered is not ours: it took the port meanwhile
            raise ServeError(f"the Prefect server exited with status {process.returncode}")
    except BaseException as exc:  # Ctrl-C included: a server no record names would never be stopped
        process.kill()
        process.wait()
        if not isinstance(exc, ServeError):
            raise
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise ServeError(f"{exc}; its last words: {tail[0]} (full log: {log_path})") from None
    record = Record(url=url, pid=process.pid, prefect_home=str(folder), started=time.time())
    partial = _file(f"json.{os.getpid()}", folder)
    partial.write_text(json.dumps(asdict(record)))
    os.replace(partial, _file("json", folder))
    return record


def _stop(record: Record, folder: Path, timeout: float = 30.0) -> None:
    """Stop the recorded server and forget it. The caller holds `server.lock` and, exclusively, `server.users`."""
    if _is_server_process(record.pid):
        os.kill(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _is_server_process(record.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _is_server_process(record.pid):
            os.kill(record.pid, signal.SIGKILL)
    _file("json", folder).unlink(missing_ok=True)


@contextmanager
def attached(port: int | None = None, env: dict[str, str] | None = None) -> Iterator[Record]:
    """This home's server, started (on `port`, else a free one) if none serves it, in use until the block ends."""
    folder = prefect_home()
    with _flock(_file("lock", folder), fcntl.LOCK_EX):
        record = read_record(folder)
        if record is None or not serves_this_home(record, folder):
            # A recorded server that does not answer as this home's is left alone (it may be another home's);
            # a hung one of this home's stops itself once no record names it.
            record = _start(folder, port, env or {})
        users = os.open(_file("users", folder), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(users, fcntl.LOCK_SH)  # before the start lock goes: the idle stop cannot come between
    try:
        yield record
    finally:
        os.utime(users)
        os.close(users)
        if environment().server_idle == 0:
            stop_if_unused(folder, wait=True)


@contextmanager
def _unused_for(folder: Path, idle: float, wait: bool = False) -> Iterator[bool]:
    """Held while it says whether no command is starting or using the server and the last use is `idle` seconds
    old: the server may then be stopped inside. The users' lock is taken without waiting; the start lock too,
    unless `wait` (then a command starting the server meanwhile is waited for, and found using it)."""
    with _flock(_file("lock", folder), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB)) as starting_free:
        if not starting_free:
            yield False
            return
        with _flock(_file("users", folder), fcntl.LOCK_EX | fcntl.LOCK_NB) as unused:
            yield unused and time.time() - _file("users", folder).stat().st_mtime >= idle


def stop_if_unused(folder: Path, idle: float = 0.0, wait: bool = False) -> bool:
    """Stop this home's server if no one uses it and the last use is `idle` seconds old: True when stopped.
    `wait`: for the start lock, which the server's own idle watch holds for a moment every half second: a
    command that ends its server (CHARFLOW_SERVER_IDLE=0) must not leave it running for meeting that moment."""
    with _unused_for(folder, idle, wait) as idle_long_enough:
        record = read_record(folder)
        if not idle_long_enough or record is None:
            return False
        _stop(record, folder)
        return True


def stop(folder: Path | None = None) -> Record | None:
    """`charflow server stop`: the stopped server's record; None when none ran."""
    folder = folder or prefect_home()
    with _flock(_file("lock", folder), fcntl.LOCK_EX):
        record = read_record(folder)
        if record is None:
            return None
        with _flock(_file("users", folder), fcntl.LOCK_EX | fcntl.LOCK_NB) as unused:
            if not unused:
                raise ServeError(
                    f"the Prefect server of {folder} is in use by a running command or charflow serve; let them "
                    "finish (or stop them), then run charflow server stop again"
                )
            _stop(record, folder)
    return record


def status(folder: Path | None = None) -> dict[str, object]:
    """`charflow server status`: whether this home's server runs, where, and since when it is unused."""
    folder = folder or prefect_home()
    record = read_record(folder)
    running = record is not None and serves_this_home(record, folder)
    in_use, last_use = False, time.time()
    if running:
        with _flock(_file("users", folder), fcntl.LOCK_EX | fcntl.LOCK_NB) as unused:
            in_use = not unused
        last_use = _file("users", folder).stat().st_mtime
    return {
        "running": running,
        "url": record.url if running and record else None,
        "pid": record.pid if running and record else None,
        "prefect_home": str(folder),
        "in_use": running and in_use,
        "idle_seconds": None if not running or in_use else round(time.time() - last_use),
        "stops_after_idle_seconds": environment().server_idle,
    }


def check_reachable(api_url: str, timeout: float = 5.0) -> None:
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout):
            pass
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLCertVerificationError):  # https with a CA of the set-up's own
            raise ServeError(
                f"the Prefect server at PREFECT_API_URL={api_url} has a certificate this machine does not trust "
                f"({reason.verify_message}); set SSL_CERT_FILE to the certificate of the CA that signed it"
            ) from None
        raise ServeError(
            f"cannot reach the Prefect server at PREFECT_API_URL={api_url} ({reason}); start it (charflow serve) "
            "or unset PREFECT_API_URL to use this home's own"
        ) from None
    check_credentials(api_url)  # the health check is open to anyone


@contextmanager
def prefect_api() -> Iterator[None]:
    """PREFECT_API_URL for the command: the given server, checked, or this home's, set before Prefect loads.

    When Prefect is already imported (charflow called inside another Prefect program or a test harness),
    that program's settings stand.
    """
    if "prefect" in sys.modules:
        yield
        return
    if api_url := os.environ.get("PREFECT_API_URL"):
        check_reachable(api_url)
        yield
        return
    with attached() as record:
        os.environ["PREFECT_API_URL"] = record.url
        # A home server started with PREFECT_SERVER_API_AUTH_STRING: this command is its client.
        given_auth = os.environ.get(AUTH_STRING)
        if not given_auth and (auth := auth_string(own_server=True)):
            os.environ[AUTH_STRING] = auth
        try:
            yield
        finally:
            drain_prefect()  # while the server still answers
            os.environ.pop("PREFECT_API_URL", None)
            if not given_auth:
                os.environ.pop(AUTH_STRING, None)


def drain_prefect(timeout: float = 10.0) -> None:
    """Send Prefect's pending logs and events while the server still answers."""
    if "prefect.logging.handlers" in sys.modules:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=timeout)
    if "prefect.events.worker" in sys.modules:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=timeout)


def _stop_when_idle(server: object, folder: Path) -> None:
    """The server's own watch: it stops once unused for CHARFLOW_SERVER_IDLE seconds, and forgets itself.
    At 0 the last command stops it; the watch then steps in after WATCH_GRACE only, for a command that could not
    (killed), so that the two never race for one stop."""
    idle = environment().server_idle or WATCH_GRACE
    answering_since = None
    while not getattr(server, "should_exit", False):
        time.sleep(min(max(idle / 4, 0.5), 15.0))
        if answering_since is None and getattr(server, "started", False):
            answering_since = time.monotonic()
        record = read_record(folder)
        if record is None or record.pid != os.getpid():
            # Not recorded yet: its starter records it once it answers. Still not, long after: no one will.
            if answering_since is not None and time.monotonic() - answering_since > ORPHAN_AFTER:
                server.should_exit = True  # type: ignore[attr-defined]
            continue
        with _unused_for(folder, idle) as idle_long_enough:
            if idle_long_enough:
                _file("json", folder).unlink(missing_ok=True)
                server.should_exit = True  # type: ignore[attr-defined]


def run(port: int) -> None:
    """The server process: Prefect's app under uvicorn until SIGTERM, or idle."""
    import uvicorn
    from prefect.server.api.server import create_app
    from prefect.settings import get_current_settings

    from charflow import server_database

    folder = prefect_home()
    database = get_current_settings().server.database.connection_url
    if database is not None:
        server_database.seed(database.get_secret_value())
    _file("users", folder).touch()  # its start counts as a use
    config = uvicorn.Config(create_app(final=True), host="127.0.0.1", port=port, log_level="error", lifespan="on")
    server = uvicorn.Server(config)
    threading.Thread(target=_stop_when_idle, args=(server, folder), name="idle-stop", daemon=True).start()
    server.run()
    # Stopped by a signal: forget itself, unless a command is replacing it right now (it will).
    with suppress(OSError), _flock(_file("lock", folder), fcntl.LOCK_EX | fcntl.LOCK_NB) as free:
        record = read_record(folder)
        if free and record is not None and record.pid == os.getpid():
            _file("json", folder).unlink()


if __name__ == "__main__":
    run(int(sys.argv[1]))

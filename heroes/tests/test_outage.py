"""A database outage drill against a real server and a real PostgreSQL.

A throwaway PostgreSQL cluster (initdb/pg_ctl) serves a production-style gunicorn
(`make serve`'s configuration). While a client keeps creating heroes, PostgreSQL is
stopped and started again. The drill checks that requests fail fast with 503 (not a
hang, not a 500), that the same server processes recover on their own, and that every
hero answered 201 is in the database.

It takes ~20 s, so it is kept out of `make test` (marker `outage`) and run by
`make outage` and `.ci/run`.
"""

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from .server import free_port, prepare_to_serve, production_env, request, start_gunicorn

pytestmark = pytest.mark.outage


def as_postgres(*command: str) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


class Cluster:
    """A throwaway PostgreSQL cluster on a free port."""

    def __init__(self) -> None:
        bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        assert bindirs, "PostgreSQL server binaries not found under /usr/lib/postgresql"
        self.bin = Path(bindirs[-1])
        # Not under pytest's tmp_path: its parents are private to root.
        self.data = Path(tempfile.mkdtemp(prefix="heroes-outage-"))
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/heroes"
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust")

    def run(self, tool: str, *args: str) -> None:
        subprocess.run(as_postgres(str(self.bin / tool), *args), check=True, capture_output=True)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        # -l: the server must not inherit our pipes, or run() would wait for it to exit.
        log = self.data / "server.log"
        self.run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(log), "-w", "start")

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture
def cluster():
    cluster = Cluster()
    cluster.start()
    with psycopg.connect(cluster.url.replace("/heroes", "/postgres"), autocommit=True) as db:
        db.execute("CREATE DATABASE heroes")
    yield cluster
    with contextlib.suppress(subprocess.CalledProcessError):
        cluster.stop()
    shutil.rmtree(cluster.data, ignore_errors=True)


def test_database_outage_drill(cluster, tmp_path):
    env = production_env(tmp_path, DATABASE_URL=cluster.url, DATABASE_POOL_TIMEOUT="3")
    base = f"http://127.0.0.1:{env['PORT']}"

    run = prepare_to_serve(env)
    run(
        "shell",
        "--no-imports",
        "-c",
        "from django.contrib.auth import get_user_model; "
        "get_user_model().objects.create_superuser('drill', password=None)",
    )
    token = run("create_api_token", "drill").strip().splitlines()[-1]

    created: list[str] = []
    failures: list[int] = []
    stop_writing = threading.Event()
    writer = threading.Thread(target=lambda: None)

    log = tmp_path / "server.log"
    server = start_gunicorn(env, log)
    try:

        def keep_writing() -> None:
            n = 0
            while not stop_writing.is_set():
                n += 1
                status, _, _ = request(
                    f"{base}/api/v1/heroes", "POST", {"nickname": f"drill {n}"}, token
                )
                (created.append(f"drill {n}") if status == 201 else failures.append(status))
                time.sleep(0.02)

        writer = threading.Thread(target=keep_writing)
        writer.start()
        time.sleep(1)

        cluster.stop()
        for path in ["/api/v1/heroes", f"/api/v1/heroes/{'0' * 8}-0000-0000-0000-{'0' * 12}"]:
            status, body, took = request(base + path)
            assert status == 503, (path, status, body)
            assert body == {"detail": "The database is unavailable; try again shortly."}
            assert took < 5, f"{path} took {took:.1f}s"
        status, body, took = request(f"{base}/api/v1/health")
        assert (status, body["database"]) == (503, "unavailable") and took < 5
        status, body, took = request(f"{base}/heroes/")
        assert status == 503 and "Temporarily unavailable" in body and took < 5
        status, body, took = request(f"{base}/api/v1/heroes", "POST", {"nickname": "during"}, token)
        assert status == 503 and took < 5

        cluster.start()
        deadline = time.monotonic() + 15
        while request(f"{base}/api/v1/heroes")[0] != 200:
            assert time.monotonic() < deadline, "the server did not recover"
            time.sleep(0.2)
        recovered = len(created)
        while len(created) < recovered + 5:  # writes resume too
            assert time.monotonic() < deadline, "writes did not resume after the outage"
            time.sleep(0.2)
        stop_writing.set()
        writer.join()

        assert set(failures) <= {503}, failures
        with psycopg.connect(cluster.url) as db:
            stored = {row[0] for row in db.execute("SELECT nickname FROM hrs_heroes")}
        assert set(created) <= stored, "a hero answered 201 is missing"
        assert "during" not in stored
        assert server.poll() is None
        assert log.read_text().count("Booting worker") == 2, "workers were restarted"
    finally:
        stop_writing.set()
        if writer.is_alive():
            writer.join()
        server.terminate()
        server.wait(timeout=30)

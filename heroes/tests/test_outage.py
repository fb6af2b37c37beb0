"""A database outage drill against a real server and a real PostgreSQL.

A throwaway PostgreSQL cluster (initdb/pg_ctl) serves a production-style gunicorn
(`make serve`'s configuration). While a client keeps creating heroes, PostgreSQL is
stopped and started again. The drill checks that requests fail fast with 503 (not a
hang, not a 500), that the same server processes recover on their own, and that every
hero answered 201 is in the database.

It takes ~20 s, so it is kept out of `make test` (marker `outage`) and run by
`make outage` and `.ci/run`.
"""

import threading
import time

import psycopg
import pytest

from .clusters import running_cluster
from .server import prepare_to_serve, production_env, request, start_gunicorn, superuser_token

pytestmark = pytest.mark.outage


@pytest.fixture
def cluster():
    with running_cluster() as cluster:
        yield cluster


def test_database_outage_drill(cluster, tmp_path):
    url = cluster.create_database("heroes")
    env = production_env(tmp_path, DATABASE_URL=url, DATABASE_POOL_TIMEOUT="3")
    base = f"http://127.0.0.1:{env['PORT']}"

    token = superuser_token(prepare_to_serve(env))

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
                status = request(
                    f"{base}/api/v1/heroes", "POST", {"nickname": f"drill {n}"}, token
                ).status
                (created.append(f"drill {n}") if status == 201 else failures.append(status))
                time.sleep(0.02)

        writer = threading.Thread(target=keep_writing)
        writer.start()
        time.sleep(1)

        cluster.stop()
        for path in ["/api/v1/heroes", f"/api/v1/heroes/{'0' * 8}-0000-0000-0000-{'0' * 12}"]:
            status, body, took, headers, _ = request(base + path)
            assert status == 503, (path, status, body)
            assert body == {"detail": "The database is unavailable; try again shortly."}
            assert took < 5, f"{path} took {took:.1f}s"
            assert headers["Retry-After"] == "5"
        status, body, took, *_ = request(f"{base}/api/v1/health")
        assert (status, body["database"]) == (503, "unavailable") and took < 5
        status, body, took, *_ = request(f"{base}/heroes/")
        assert status == 503 and "Temporarily unavailable" in body and took < 5
        status, body, took, *_ = request(
            f"{base}/api/v1/heroes", "POST", {"nickname": "during"}, token
        )
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
        with psycopg.connect(url) as db:
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

"""The benchmarks' loader (bench/seed.py, behind make bench and make scale) keeps up
with the schema: it COPYs rows past the model's save(), so a new NOT NULL column
breaks it unless it writes that column too. And bench/cpu.py still drives every
scenario through the production application."""

import os
import subprocess
import sys

import psycopg

from .helpers import REPO_ROOT, manage


def test_seed_loads_heroes_the_app_reads_and_writes(fresh_postgres_database):
    env = {"DATABASE_URL": fresh_postgres_database, "DATABASE_REPLICA_URLS": ""}
    assert manage("migrate", "--no-input", **env).returncode == 0
    seeded = subprocess.run(
        [sys.executable, "bench/seed.py", "--count", "50"],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert seeded.returncode == 0, seeded.stderr
    with psycopg.connect(fresh_postgres_database) as db:
        rows = db.execute("SELECT count(*), min(version), max(version) FROM hrs_heroes").fetchone()
    assert rows == (50, 1, 1)


def test_seed_loads_the_seed_stacks_table_too(fresh_postgres_database):
    # make bench --stack seed loads bench/seed_stack.py's table, which has no version.
    with psycopg.connect(fresh_postgres_database, autocommit=True) as db:
        db.execute(
            "CREATE TABLE hrs_heroes (uuid uuid PRIMARY KEY, nickname varchar(255) NOT NULL, "
            "role varchar(16), created_at timestamp NOT NULL, updated_at timestamp NOT NULL)"
        )
    seeded = subprocess.run(
        [sys.executable, "bench/seed.py", "--count", "50"],
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": fresh_postgres_database, "DATABASE_REPLICA_URLS": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert seeded.returncode == 0, seeded.stderr
    with psycopg.connect(fresh_postgres_database) as db:
        assert db.execute("SELECT count(*) FROM hrs_heroes").fetchone() == (50,)


def test_the_cpu_measure_runs_every_scenario(postgres_server):
    measured = subprocess.run(
        [sys.executable, "bench/cpu.py", "--requests", "5"],
        cwd=REPO_ROOT,
        env={**os.environ, "BENCH_SERVER": postgres_server},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert measured.returncode == 0, measured.stderr
    rows = [line.split() for line in measured.stdout.splitlines()[1:]]
    assert [(row[0], " ".join(row[4:])) for row in rows] == [
        ("get", "statuses {200: 5}"),
        ("list", "statuses {200: 5}"),
        ("create", "statuses {201: 5}"),
        ("patch", "statuses {200: 5}"),
    ]

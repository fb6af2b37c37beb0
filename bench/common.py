"""What the benchmark scripts share: a fresh database and the production settings."""

import os
import secrets
from pathlib import Path

import psycopg

# The PostgreSQL server the benchmarks create their databases on.
SERVER = os.environ.get("BENCH_SERVER", "postgres://postgres@127.0.0.1:5432")


def recreate_database(name: str) -> str:
    """Drop database `name` if it exists, create it empty; return its DATABASE_URL."""
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    return f"{SERVER}/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def production_env(work: Path, allowed_hosts: str) -> dict[str, str]:
    """The environment of `make serve` (DEBUG off, plain HTTP), static files in `work`."""
    return {
        **os.environ,
        "DEBUG": "False",
        "HTTPS": "False",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": allowed_hosts,
        "STATIC_ROOT": str(work / "static"),
        "LOG_LEVEL": "WARNING",  # a log line per request would be part of the measure
    }

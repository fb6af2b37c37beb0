"""Throwaway PostgreSQL servers for the drills (make outage, make failover-test): a
cluster made with initdb on a free port, in a temporary directory owned by the postgres
user (PostgreSQL refuses to run as root), removed afterwards. Its standbys are made by
bench/replica.py's Replica, as `make replica` makes a developer's."""

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

from bench.replica import Replica, as_postgres, server_binaries

from .server import free_port


class Cluster:
    """A PostgreSQL cluster of its own on 127.0.0.1 and a free port; `settings` are
    `name=value` pairs for its server's command line."""

    def __init__(self, *settings: str) -> None:
        self.bin = server_binaries()
        # Not under pytest's tmp_path: its parents are private to root.
        self.data = Path(tempfile.mkdtemp(prefix="heroes-cluster-"))
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"postgres://postgres@{self.address}"
        self.settings = settings
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def run(self, tool: str, *args: str) -> None:
        subprocess.run(as_postgres(str(self.bin / tool), *args), check=True, capture_output=True)

    def start(self) -> None:
        options = " ".join(
            [f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"]
            + [f"-c {setting}" for setting in self.settings]
        )
        # -l: the server must not inherit our pipes, or run() would wait for it to exit.
        log = self.data / "server.log"
        self.run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.data, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """Create database `name`; its URL."""
        with psycopg.connect(f"{self.url}/postgres", autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return f"{self.url}/{name}"


@contextlib.contextmanager
def running_cluster(*settings: str) -> Iterator[Cluster]:
    """A started Cluster, removed at the end."""
    cluster = Cluster(*settings)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@contextlib.contextmanager
def standby_of(cluster: Cluster) -> Iterator[Replica]:
    """A running hot standby of `cluster` (pg_basebackup -R -X stream -c fast) on a free
    port, in a temporary directory, removed at the end."""
    standby = Replica(free_port(), Path(tempfile.mkdtemp(prefix="heroes-standby-")), cluster.url)
    try:
        standby.start()
        yield standby
    finally:
        standby.remove()

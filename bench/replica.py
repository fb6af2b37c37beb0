"""A streaming replica of a local PostgreSQL server, for development and the replica tests.

    make replica                               # a replica of 127.0.0.1:5432 on port 5433
    uv run python bench/replica.py start --port 5433
    uv run python bench/replica.py stop --port 5433     # stop it; `start` resumes it
    uv run python bench/replica.py promote --port 5433  # make it a primary (a failover)
    uv run python bench/replica.py remove --port 5433   # stop it and delete its copy

The first `start` lets the primary accept replication connections from 127.0.0.1 (a
`host replication all 127.0.0.1/32 trust` line in its pg_hba.conf, then a reload),
copies it with `pg_basebackup -R -X stream` into a directory owned by postgres and
starts the copy with pg_ctl on its own port as a hot standby: it streams every change
of every database of the primary and answers read-only queries. The copy keeps its
own postgresql.conf (port, socket directory and the settings a hot standby must not
have lower than its primary) and a trust pg_hba.conf: Debian keeps the primary's in
/etc, where pg_basebackup does not look. It prints the server's URL; add the database
name for DATABASE_REPLICA_URLS, e.g. postgres://postgres@127.0.0.1:5433/heroes.

No replication slot is made, so a replica left stopped for long may no longer be
able to catch up (the primary recycles its WAL): `remove` it and `start` afresh.
PostgreSQL refuses to run as root; run as root, the tools run as the postgres user.
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

PRIMARY = "postgres://postgres@127.0.0.1:5432"
REPLICATION_RULE = "host replication all 127.0.0.1/32 trust"
# A hot standby refuses to start with less of these than its primary has.
PRIMARY_LIMITS = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)


def as_postgres(*command: str) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


def server_binaries() -> Path:
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[4]))
    if not bindirs:
        sys.exit("PostgreSQL server binaries not found under /usr/lib/postgresql")
    return Path(bindirs[-1])


class Replica:
    """A hot standby of `primary` in `directory`, listening on 127.0.0.1:`port`."""

    def __init__(self, port: int, directory: Path | None = None, primary: str = PRIMARY) -> None:
        self.port = port
        self.directory = directory or Path(tempfile.gettempdir()) / f"heroes-replica-{port}"
        self.data = self.directory / "data"
        self.primary = primary
        self.url = f"postgres://postgres@127.0.0.1:{port}"
        self.bin = server_binaries()

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        # Output captured: a server started by pg_ctl would otherwise hold our pipes.
        return subprocess.run(
            as_postgres(str(self.bin / tool), *args), capture_output=True, text=True
        )

    def check(self, tool: str, *args: str) -> None:
        result = self.run(tool, *args)
        if result.returncode != 0:
            sys.exit(f"{tool} failed:\n{result.stdout}{result.stderr}")

    def is_running(self) -> bool:
        return (
            self.data.exists()
            and self.run("pg_ctl", "-D", str(self.data), "status").returncode == 0
        )

    def start(self) -> None:
        if not self.data.exists():
            self.create()
        if not self.is_running():
            log = self.data / "server.log"
            self.check("pg_ctl", "-D", str(self.data), "-l", str(log), "-w", "-t", "120", "start")

    def stop(self) -> None:
        if self.is_running():
            self.check("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def promote(self) -> None:
        """Make the standby a primary: it stops following and accepts writes."""
        self.check("pg_ctl", "-D", str(self.data), "-w", "promote")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def create(self) -> None:
        with psycopg.connect(f"{self.primary}/postgres", autocommit=True) as primary:
            allow_replication(primary)
            limits = {name: setting(primary, name) for name in PRIMARY_LIMITS}
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        address = urlsplit(self.primary)
        basebackup = (
            "pg_basebackup",
            *("-h", address.hostname or "127.0.0.1", "-p", str(address.port or 5432)),
            *("-U", address.username or "postgres", "-D", str(self.data)),
            "-R",  # standby.signal and primary_conninfo: start as a standby of the primary
            *("-X", "stream", "--checkpoint", "fast"),
            "--no-sync",  # a copy for development and tests: no need to wait for the disk
        )
        for _ in range(20):  # the primary reloads pg_hba.conf a moment after it is asked
            result = self.run(*basebackup)
            if "pg_hba.conf" not in result.stderr:
                break
            time.sleep(0.25)
        if result.returncode != 0:
            sys.exit(f"pg_basebackup failed:\n{result.stdout}{result.stderr}")
        settings = {
            "port": self.port,
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.data}'",
            "hot_standby": "on",
            **limits,
        }
        self.write("postgresql.conf", "".join(f"{k} = {v}\n" for k, v in settings.items()))
        self.write("pg_hba.conf", "local all all trust\nhost all all 127.0.0.1/32 trust\n")
        self.write("pg_ident.conf", "")

    def write(self, name: str, text: str) -> None:
        path = self.data / name
        path.write_text(text)
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")


def setting(server: psycopg.Connection, name: str) -> str:
    """A server setting's value (SHOW)."""
    [(value,)] = server.execute(f"SHOW {name}").fetchall()
    return str(value)


def allow_replication(primary: psycopg.Connection) -> None:
    """Add REPLICATION_RULE to the primary's pg_hba.conf if missing, and reload it."""
    hba_file = Path(setting(primary, "hba_file"))
    lines = [" ".join(line.split()) for line in hba_file.read_text().splitlines()]
    if REPLICATION_RULE not in lines:
        with hba_file.open("a") as hba:
            hba.write(f"{REPLICATION_RULE}\n")
        primary.execute("SELECT pg_reload_conf()")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "promote", "remove"])
    parser.add_argument("--port", type=int, default=5433)
    parser.add_argument("--dir", type=Path, help="default: $TMPDIR/heroes-replica-PORT")
    parser.add_argument("--primary", default=PRIMARY, help=f"default: {PRIMARY}")
    args = parser.parse_args()
    replica = Replica(args.port, args.dir, args.primary)
    getattr(replica, args.action)()
    if args.action == "start":
        print(replica.url)


if __name__ == "__main__":
    main()

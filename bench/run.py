"""The API benchmark: `make serve`'s server (gunicorn, 2 uvicorn workers) on a local
PostgreSQL, loaded by wrk at 32 connections for 10 s per scenario.

    make bench              # or: uv run python bench/run.py --seconds 10 --heroes 10000
    make bench BENCH_ARGS="--stack seed"    # the same load on the seed stack

It installs wrk (Debian's package) when missing, creates the database `heroes_bench`
on the server of BENCH_SERVER (default postgres://postgres@127.0.0.1:5432), seeds
heroes, issues an API token and prints req/s, p50, p99 and errors per scenario.
`--stack seed` loads the article's FastAPI + SQLModel + asyncpg service instead
(bench/seed_stack.py, database `seed_bench`), to compare both on the same machine.
A benchmark, not a test: the figures depend on the machine.
"""

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import production_env, recreate_database

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
SCENARIOS = ["get", "list", "create", "patch"]


def ensure_wrk() -> str:
    if not shutil.which("wrk"):
        print("installing wrk (apt-get install wrk)", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True)
    return shutil.which("wrk")


def parse_wrk(output: str) -> dict:
    def latency_ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    if socket_errors := re.search(r"Socket errors: (.*)", output):
        errors += sum(int(n) for n in re.findall(r"(\d+)", socket_errors.group(1)))
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": latency_ms("50%"),
        "p99": latency_ms("99%"),
        "errors": errors,
    }


def bench_env(work: Path, database_url: str, args: argparse.Namespace) -> dict[str, str]:
    return {
        **production_env(work, allowed_hosts="127.0.0.1,localhost"),
        "DATABASE_URL": database_url,
        "PORT": str(args.port),
        "WEB_CONCURRENCY": str(args.workers),
    }


def seed_heroes(env: dict[str, str], args: argparse.Namespace, work: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "bench/seed.py",
            "--count",
            str(args.heroes),
            "--uuids",
            str(work / "uuids"),
        ],
        cwd=REPO,
        env=env,
        check=True,
    )


def start_heroes(args: argparse.Namespace, work: Path) -> tuple[subprocess.Popen, str]:
    """Our app, as `make serve` runs it; returns the server and an API token."""
    env = bench_env(work, recreate_database("heroes_bench"), args)

    def manage(*command: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    manage("migrate", "--no-input")
    seed_heroes(env, args, work)
    manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.contrib.auth import get_user_model; "
        "get_user_model().objects.create_superuser('bench', password=None)",
    )
    token = manage("create_api_token", "bench").strip().splitlines()[-1]
    command = [sys.executable, "-m", "gunicorn", "-c", "heroes_site/gunicorn.conf.py"]
    return serve([*command, "heroes_site.asgi:application"], env, work), token


def start_seed_stack(args: argparse.Namespace, work: Path) -> tuple[subprocess.Popen, str]:
    """The seed stack, in a throwaway environment of its own; it takes no token."""
    env = bench_env(work, recreate_database("seed_bench"), args)
    seed_python = ["uv", "run", "--no-project", "--with-requirements", "bench/seed_stack.txt"]
    subprocess.run(
        [*seed_python, "python", "bench/seed_stack.py", "create-tables"],
        cwd=REPO,
        env=env,
        check=True,
    )
    seed_heroes(env, args, work)
    gunicorn = [
        *seed_python,
        "gunicorn",
        "--workers",
        str(args.workers),
        "--worker-class",
        "uvicorn_worker.UvicornWorker",
        "--bind",
        f"127.0.0.1:{args.port}",
        "--chdir",
        "bench",
        "seed_stack:app",
    ]
    return serve(gunicorn, env, work), "unused"


def serve(command: list[str], env: dict[str, str], work: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(work / "server.log").open("w"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--heroes", type=int, default=10_000)
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--stack", choices=["heroes", "seed"], default="heroes")
    parser.add_argument("--scenarios", nargs="+", default=SCENARIOS, choices=SCENARIOS)
    args = parser.parse_args()

    wrk = ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="heroes-bench-"))
    start = start_seed_stack if args.stack == "seed" else start_heroes
    server, token = start(args, work)
    base = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/api/v1/health", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        wrk_env = {**os.environ, "BENCH_UUIDS": str(work / "uuids"), "BENCH_TOKEN": token}
        command = [wrk, "-t2", f"-c{args.connections}", "--latency"]
        subprocess.run(
            [*command, "-d3s", "-s", str(BENCH / "get.lua"), base], env=wrk_env, capture_output=True
        )
        print(
            f"\n{args.stack} on {platform.node()}: {os.cpu_count()} CPUs, {args.workers} workers, "
            f"{args.connections} connections, {args.seconds} s per scenario, {args.heroes:,} heroes"
        )
        print(f"{'scenario':<10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>10}")
        for scenario in args.scenarios:
            output = subprocess.run(
                [*command, f"-d{args.seconds}s", "-s", str(BENCH / f"{scenario}.lua"), base],
                env=wrk_env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            result = parse_wrk(output)
            print(
                f"{scenario:<10}{result['rps']:>10.0f}{result['p50']:>10.1f}"
                f"{result['p99']:>10.1f}{result['errors']:>10}",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

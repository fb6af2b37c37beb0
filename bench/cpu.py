"""CPU per API request, in process: Python's, and the local PostgreSQL's.

    uv run python bench/cpu.py                       # get, list, create, patch; 3,000 each
    uv run python bench/cpu.py --scenarios create --profile    # and where Python's goes

Requests go one after another through the production ASGI application (what `make
serve`'s workers run: DEBUG off, the lifespan's pools) without a server or a network,
on a fresh database `heroes_cpu_…` on BENCH_SERVER; the API token's user is a superuser.
It prints, per request, the CPU time of this process and of every `postgres` process
of this machine (/proc, Linux: run it on an otherwise idle machine). What `make bench`
cannot tell apart: which side a change saves, and by how much, with far less noise
than req/s under load. Measure the code before and after, alternated.
"""

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from common import drop_database, production_env, recreate_database

SCENARIOS = ["get", "list", "create", "patch"]
DATABASE = f"heroes_cpu_{secrets.token_hex(4)}"


def postgres_cpu_seconds() -> float:
    """The CPU time of every process named postgres on this machine, so far."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if name.startswith("postgres"):
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


async def call(app: Callable, method: str, path: str, body: dict | None, token: str) -> int:
    """One request through the ASGI application; its status."""
    content = json.dumps(body).encode() if body is not None else b""
    headers = [
        (b"host", b"localhost"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
        (b"authorization", f"Bearer {token}".encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    messages = [{"type": "http.request", "body": content, "more_body": False}]
    statuses = []

    async def receive() -> dict:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # no disconnect: the response ends the wait
        return {}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


def requests(scenario: str, hero: str, prefix: str) -> Callable[[int], tuple]:
    """The nth request of a scenario: method, path, body."""
    heroes = "/api/v1/heroes"
    return {
        "get": lambda n: ("GET", f"{heroes}/{hero}", None),
        "list": lambda n: ("GET", heroes, None),
        "create": lambda n: ("POST", heroes, {"nickname": f"{prefix} {n}", "role": "mage"}),
        "patch": lambda n: ("PATCH", f"{heroes}/{hero}", {"role": ["mage", "tank"][n % 2]}),
    }[scenario]


async def ignore(message: dict) -> None:
    pass


async def measure(args: argparse.Namespace, token: str) -> None:
    from heroes_site.asgi import application

    lifespan: asyncio.Queue[dict] = asyncio.Queue()
    await lifespan.put({"type": "lifespan.startup"})
    served = asyncio.create_task(
        application({"type": "lifespan", "asgi": {"version": "3.0"}}, lifespan.get, ignore)
    )

    def run(*request: object) -> Awaitable[int]:
        return call(application, *request, token)  # type: ignore[arg-type]

    prefix = f"cpu {secrets.token_hex(4)}"
    if (status := await run("POST", "/api/v1/heroes", {"nickname": f"{prefix} 0"})) != 201:
        sys.exit(f"creating a hero answered {status}")
    from heroes.models import Hero

    hero = str((await Hero.objects.afirst()).pk)
    print(f"{'scenario':<10}{'python ms':>12}{'postgres ms':>14}{'wall ms':>10}   per request")
    for scenario in args.scenarios:
        request = requests(scenario, hero, f"{prefix} {scenario}")
        for n in range(200):  # warm-up: statements compiled, connections made
            await run(*request(-n - 1))
        profile = cProfile.Profile() if args.profile else None
        statuses: dict[int, int] = {}
        postgres, python, wall = postgres_cpu_seconds(), time.process_time(), time.perf_counter()
        if profile:
            profile.enable()
        for n in range(args.requests):
            status = await run(*request(n))
            statuses[status] = statuses.get(status, 0) + 1
        if profile:
            profile.disable()
        wall, python = time.perf_counter() - wall, time.process_time() - python
        postgres = postgres_cpu_seconds() - postgres
        per = 1000 / args.requests
        print(
            f"{scenario:<10}{python * per:>12.3f}{postgres * per:>14.3f}{wall * per:>10.3f}"
            f"   statuses {statuses}"
        )
        if profile:
            pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    await lifespan.put({"type": "lifespan.shutdown"})
    await served


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=SCENARIOS, choices=SCENARIOS)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--profile", action="store_true", help="cProfile: the top 30 by own time")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="heroes-cpu-"))
    os.environ.update(production_env(work, allowed_hosts="localhost"))
    os.environ.update(DATABASE_URL=recreate_database(DATABASE), DATABASE_REPLICA_URLS="")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heroes_site.settings")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        from django.contrib.auth import get_user_model
        from django.db import connections

        from heroes.models import ApiToken

        user = get_user_model().objects.create_superuser("cpu", password=None)
        _, token = ApiToken.issue(user, "cpu")
        connections.close_all()
        asyncio.run(measure(args, token))
    finally:
        drop_database(DATABASE)


if __name__ == "__main__":
    main()

"""The scale check: does each list request cost the same at 10,000 and at 1,000,000 heroes?

    make scale              # or: uv run python bench/scale.py --sizes 10000 1000000

For each size it creates a fresh database `heroes_scale_<size>` on the server of
BENCH_SERVER (default postgres://postgres@127.0.0.1:5432), migrates it, bulk-loads the
heroes with bench/seed.py (timed) and measures, in a child process, the p50 and p90
latency of each list request through Django's test client (the app, not the network),
with a staff user logged in, and of each API request as `make serve` runs it, on the
event loop's pools (heroes_site.db, anonymous). Then it prints the p50 table
with the ratio between the largest and the smallest size, and EXPLAIN (ANALYZE,
BUFFERS) of every hero query the requests ran on the largest database, flagging a Seq
Scan on hrs_heroes, a Sort or a COUNT over more rows than a page needs. A benchmark,
not a test: the figures depend on the machine.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import drop_database, production_env, recreate_database

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The searches: a term in every nickname ("Hero 0000042") and one in about a hundred.
SEARCH_MANY = "hero"
SEARCH_FEW = "00042"
ADMIN = "/admin/heroes/hero/"
# (kind, path); "deep" is filled in with the cursor reached by following `next`.
REQUESTS = [
    ("api first page", "/api/v1/heroes"),
    ("api deep page", None),
    (f"api search {SEARCH_FEW!r}", f"/api/v1/heroes?search={SEARCH_FEW}"),
    (f"api search {SEARCH_MANY!r}", f"/api/v1/heroes?search={SEARCH_MANY}"),
    ("api role=mage", "/api/v1/heroes?role=mage"),
    ("admin changelist", ADMIN),
    (f"admin ?q={SEARCH_FEW}", f"{ADMIN}?q={SEARCH_FEW}"),
    (f"admin ?q={SEARCH_MANY}", f"{ADMIN}?q={SEARCH_MANY}"),
    ("admin role=mage", f"{ADMIN}?role__exact=mage"),
    ("html list", "/heroes/"),
    (f"html ?q={SEARCH_FEW}", f"/heroes/?q={SEARCH_FEW}"),
    (f"html ?q={SEARCH_MANY}", f"/heroes/?q={SEARCH_MANY}"),
]
DEEP_PAGES = 1_000
# A plan node reading more rows than this serves more than a page (the HTML list's
# count stops at 1001 rows).
ROWS_PER_REQUEST = 2_000


def label(size: int) -> str:
    return f"{size // 1_000_000}m" if size % 1_000_000 == 0 else f"{size // 1_000}k"


def measure(repeat: int) -> dict:
    """In the child process: time each request kind; EXPLAIN the hero queries it runs."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heroes_site.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(get_user_model().objects.create_superuser("scale", password=None))

    def get(path: str):
        response = client.get(path)
        if response.status_code != 200:
            sys.exit(f"GET {path}: {response.status_code}")
        return response

    # Follow `next` as a client would; a small database ends before DEEP_PAGES.
    path, pages = "/api/v1/heroes", 0
    while pages < DEEP_PAGES and (next_url := get(path).json()["next"]):
        path, pages = next_url.removeprefix("http://testserver"), pages + 1
    requests = [(kind, url or path) for kind, url in REQUESTS]

    results = {"deep_pages": pages, "timings": {}, "queries": {}}
    for kind, url in requests:
        for _ in range(3):  # warm the caches
            get(url)
        timings = []
        for _ in range(repeat):
            started = time.perf_counter()
            get(url)
            timings.append((time.perf_counter() - started) * 1000)
        results["timings"][kind] = timings
        with CaptureQueriesContext(connection) as queries:
            get(url)
        # The admin's own EXPLAIN (its count estimate) is listed with the plans.
        results["queries"][kind] = [
            q["sql"]
            for q in queries
            if "hrs_heroes" in q["sql"] and not q["sql"].startswith("EXPLAIN")
        ]
    for kind, timings in measure_on_event_loop(requests, repeat).items():
        results["timings"][f"{kind} (event loop)"] = timings
    results["explain"] = {
        kind: [explain(connection, sql) for sql in statements]
        for kind, statements in results["queries"].items()
    }
    return results


def measure_on_event_loop(requests: list[tuple[str, str]], repeat: int) -> dict:
    """The API's requests on heroes_site.db's pools, as under make serve."""
    import asyncio

    from django.test import AsyncClient

    from heroes_site.db import serving

    async def run() -> dict:
        timings: dict[str, list[float]] = {}
        async with serving():
            client = AsyncClient()
            for kind, url in requests:
                if not kind.startswith("api"):
                    continue
                timings[kind] = []
                for n in range(3 + repeat):  # 3 to warm the caches
                    started = time.perf_counter()
                    response = await client.get(url)
                    if response.status_code != 200:
                        sys.exit(f"GET {url} on the event loop: {response.status_code}")
                    if n >= 3:
                        timings[kind].append((time.perf_counter() - started) * 1000)
        return timings

    return asyncio.run(run())


def explain(connection, sql: str) -> dict:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
        plan = cursor.fetchone()[0][0]
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
        text = "\n".join(row[0] for row in cursor.fetchall())
    return {"sql": sql, "text": text, "problems": problems(plan["Plan"])}


def problems(node: dict) -> list[str]:
    """What makes this plan's cost grow with the table rather than with the page."""
    found = []
    kind = node["Node Type"]
    if kind == "Seq Scan" and node.get("Relation Name") == "hrs_heroes":
        found.append(f"Seq Scan on hrs_heroes ({node['Actual Rows']:,} rows)")
    inputs = sum(child["Actual Rows"] * child["Actual Loops"] for child in node.get("Plans", []))
    if kind == "Sort" and inputs > ROWS_PER_REQUEST:
        found.append(f"Sort of {inputs:,} rows")
    if kind == "Aggregate" and inputs > ROWS_PER_REQUEST:
        found.append(f"Aggregate (count) over {inputs:,} rows")
    for child in node.get("Plans", []):
        found.extend(problems(child))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=30, help="timed requests per kind")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # the child: DATABASE_URL is set
        print(json.dumps(measure(args.repeat)))
        return

    work = Path(tempfile.mkdtemp(prefix="heroes-scale-"))
    env = production_env(work, allowed_hosts="testserver")

    def run(*command: str, **extra: str) -> str:
        return subprocess.run(
            [sys.executable, *command],
            cwd=REPO,
            env={**env, **extra},
            check=True,
            stdout=subprocess.PIPE,  # errors go to stderr as they come
            text=True,
        ).stdout

    # The admin's pages need the hashed static files that DEBUG=False serves.
    run("manage.py", "collectstatic", "--no-input", "--verbosity", "0")
    results = {}
    try:
        for size in args.sizes:
            name = f"heroes_scale_{label(size)}"
            database = {"DATABASE_URL": recreate_database(name)}
            run("manage.py", "migrate", "--no-input", **database)
            started = time.monotonic()
            run("bench/seed.py", "--count", str(size), **database)
            load = time.monotonic() - started
            print(f"{name}: {size:,} heroes loaded in {load:.1f} s", flush=True)
            output = run("bench/scale.py", "--measure", "--repeat", str(args.repeat), **database)
            results[size] = json.loads(output)
            if not args.keep:
                drop_database(name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, args.repeat)


def report(results: dict, repeat: int) -> None:
    small, large = min(results), max(results)
    print(
        f"\n{os.cpu_count()} CPUs; p50 (p90) in ms of {repeat} requests; deep page = `next` "
        f"followed {results[small]['deep_pages']:,} times at "
        f"{small:,}, {results[large]['deep_pages']:,} times at {large:,}"
    )
    header = f"| kind | p50 at {small:,} | p50 at {large:,} | ratio |"
    print(header, "|---|---:|---:|---:|", sep="\n")
    for kind in results[small]["timings"]:
        figures = [results[size]["timings"][kind] for size in (small, large)]
        p50s = [statistics.median(timings) for timings in figures]
        p90s = [statistics.quantiles(timings, n=10)[-1] for timings in figures]
        ratio = p50s[1] / p50s[0]
        print(
            f"| {kind} | {p50s[0]:.1f} ({p90s[0]:.1f}) | {p50s[1]:.1f} ({p90s[1]:.1f}) "
            f"| {ratio:.2f}{' (over 2)' if ratio > 2 else ''} |"
        )
    print(f"\nEXPLAIN (ANALYZE, BUFFERS) of the hero queries at {large:,} heroes:")
    flagged = 0
    for kind, plans in results[large]["explain"].items():
        for plan in plans:
            flagged += bool(plan["problems"])
            verdict = "; ".join(plan["problems"]) or "ok"
            print(f"\n== {kind}: {verdict}\n{shorten(plan['sql'])}\n{plan['text']}")
    print(f"\n{flagged} queries flagged")


def shorten(sql: str) -> str:
    # The column lists say nothing about the plan.
    return re.sub(r'SELECT "hrs_heroes"\."uuid", .*? FROM', "SELECT … FROM", sql, count=1)


if __name__ == "__main__":
    main()

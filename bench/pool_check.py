"""What checking each pooled connection as it is handed out would cost the API.

psycopg_pool can check a connection on every checkout (`check=check_connection`: an
empty query, one round trip), so that a broken one is never handed out. The product
instead drains a pool at the first error that shows its server lost
(heroes_site/db/failover.py). This times, on one event loop, a checkout + `SELECT 1` +
return on an AsyncConnectionPool like the API's, without and with the check, in
alternating rounds; it prints the median of each and the difference per checkout.

    uv run python bench/pool_check.py            # BENCH_SERVER's database "postgres"
    uv run python bench/pool_check.py --checkouts 5000 --rounds 7
"""

import argparse
import asyncio
import statistics
import time

from common import SERVER
from psycopg_pool import AsyncConnectionPool


async def per_checkout(pool: AsyncConnectionPool, checkouts: int) -> float:
    """Mean seconds for a checkout, a `SELECT 1` and the return."""
    started = time.perf_counter()
    for _ in range(checkouts):
        async with pool.connection() as connection:
            await connection.execute("SELECT 1")
    return (time.perf_counter() - started) / checkouts


async def main(checkouts: int, rounds: int) -> None:
    url = f"{SERVER}/postgres"
    check = AsyncConnectionPool.check_connection
    async with (
        AsyncConnectionPool(url, min_size=1, max_size=1, open=False) as plain,
        AsyncConnectionPool(url, min_size=1, max_size=1, open=False, check=check) as checked,
    ):
        await per_checkout(plain, 200)  # warm up: connections made, code paths hot
        await per_checkout(checked, 200)
        times: dict[str, list[float]] = {"plain": [], "checked": []}
        for _ in range(rounds):
            times["plain"].append(await per_checkout(plain, checkouts))
            times["checked"].append(await per_checkout(checked, checkouts))
    plain_us, checked_us = (statistics.median(times[name]) * 1e6 for name in times)
    print(f"checkout + SELECT 1 + return, median of {rounds} rounds of {checkouts}:")
    print(f"  without a check: {plain_us:7.1f} µs")
    print(f"  with the check:  {checked_us:7.1f} µs (+{checked_us - plain_us:.1f} µs a checkout)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkouts", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.checkouts, args.rounds))

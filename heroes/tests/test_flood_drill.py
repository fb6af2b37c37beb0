"""The login flood drill (SPEC §11): logging in is not a way to starve the site.

`make serve`'s gunicorn (2 workers, the production password hasher, the default
pool) on a fresh PostgreSQL database. For 20 s, 40 clients from 127.0.0.2 post logins
with ever-new random usernames as fast as they can, while readers from 127.0.0.1 ask
for `/heroes/` and the health check. At least 95% of the page requests must answer
200; a 503 must say busy (with Retry-After), never "database unavailable"; health
stays 200. Twice: with the address lock (AXES_ADDRESS_FAILURE_LIMIT, lowered to 10 so
that it locks however slowly the machine hashes), after which no more passwords are
checked for the flooding address; and with that lock out of reach, as for a flood
from many addresses, where only the bound on logins at once (LOGINS_AT_ONCE) keeps
password checks from taking every database connection.

127.0.0.2 is another loopback address: an untrusted client, since FORWARDED_ALLOW_IPS
stays 127.0.0.1. Every loop stops by itself. It takes about a minute, so it is kept
out of `make test` (marker `flood`) and run by `make flood-test` and `.ci/run`.
"""

import http.client
import re
import secrets
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest

from .helpers import READER_PASSWORD, csrf_token_in
from .server import prepare_to_serve, production_env, start_gunicorn

pytestmark = pytest.mark.flood

FLOODERS = 40
READERS = 4
FLOOD_SECONDS = 20
ATTACKER, READER = "127.0.0.2", "127.0.0.1"


def exchange(
    port: int, source: str, method: str, path: str, body: str | None = None, headers=None
) -> tuple[int, dict[str, str], str]:
    """One request on a connection of its own from `source`: status, headers, text;
    status 0 for a connection that failed or timed out."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=30, source_address=(source, 0)
    )
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        text = response.read().decode()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, text
    except OSError:
        return 0, {}, ""
    finally:
        connection.close()


def login_form(port: int, source: str) -> tuple[str, str]:
    """The login page's CSRF cookie and form token, as a browser at `source` gets them."""
    status, headers, page = exchange(port, source, "GET", "/accounts/login/")
    assert status == 200, page
    return SimpleCookie(headers["set-cookie"])["csrftoken"].value, csrf_token_in(page)


def log_in(port: int, source: str, csrf: tuple[str, str], username: str, password: str) -> int:
    cookie, token = csrf
    form = {"username": username, "password": password, "csrfmiddlewaretoken": token}
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": f"csrftoken={cookie}",
    }
    return exchange(port, source, "POST", "/accounts/login/", urlencode(form), headers)[0]


def flood(port: int, until: float) -> Counter:
    """Post logins with random usernames from ATTACKER until `until`: the statuses."""
    csrf = login_form(port, ATTACKER)
    statuses: Counter = Counter()
    while time.monotonic() < until:
        guess = (f"guess-{secrets.token_hex(6)}", secrets.token_urlsafe(12))
        statuses[log_in(port, ATTACKER, csrf, *guess)] += 1
    return statuses


def read(port: int, path: str, until: float, answers: list) -> None:
    """Ask for `path` from READER until `until`, noting each answer."""
    while time.monotonic() < until:
        answers.append(exchange(port, READER, "GET", path))
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("address_limit", "what"),
    [(10, "the flooding address locked"), (1_000_000, "no address lock in reach")],
    ids=["address-lock", "logins-at-once-only"],
)
def test_pages_keep_answering_while_40_clients_flood_the_login(
    fresh_postgres_database, tmp_path, address_limit, what
):
    env = production_env(
        tmp_path,
        DATABASE_URL=fresh_postgres_database,
        AXES_ADDRESS_FAILURE_LIMIT=str(address_limit),
    )
    run = prepare_to_serve(env)
    run(
        "shell",
        "--no-imports",
        "-c",
        "from heroes.models import Hero; "
        "[Hero.objects.create(nickname=f'Flood {n}') for n in range(30)]; "
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_user('reader', password='{READER_PASSWORD}')",
    )
    log = tmp_path / "server.log"
    server = start_gunicorn(env, log)
    port = int(env["PORT"])
    pages: list = []
    health: list = []
    try:
        until = time.monotonic() + FLOOD_SECONDS
        with ThreadPoolExecutor(FLOODERS + READERS + 1) as pool:
            floods = [pool.submit(flood, port, until) for _ in range(FLOODERS)]
            readers = [pool.submit(read, port, "/heroes/", until, pages) for _ in range(READERS)]
            readers.append(pool.submit(read, port, "/api/v1/health", until, health))
            flooded = sum((f.result(timeout=FLOOD_SECONDS + 120) for f in floods), Counter())
            for reader in readers:
                reader.result(timeout=FLOOD_SECONDS + 120)
        # A user from another address logs in, unaffected; the flooding address is
        # locked once it has failed often enough.
        csrf = login_form(port, READER)
        assert log_in(port, READER, csrf, "reader", READER_PASSWORD) == 302
        attacker_csrf = login_form(port, ATTACKER)
        after = log_in(port, ATTACKER, attacker_csrf, "reader", READER_PASSWORD)
    finally:
        server.terminate()
        server.wait(timeout=30)

    served = Counter(status for status, _, _ in pages)
    share = served[200] / len(pages)
    print(
        f"\n{what}: {len(pages)} page requests, {share:.1%} answered 200 ({dict(served)}); "
        f"{sum(flooded.values())} logins posted ({dict(flooded)}); "
        f"health {dict(Counter(status for status, _, _ in health))}"
    )
    assert share >= 0.95, served
    for status, headers, text in pages:
        assert "cannot reach its database" not in text
        if status == 503:
            assert "is too busy" in text and headers.get("retry-after"), text
    assert {status for status, _, _ in health} == {200}
    assert flooded[0] == 0  # no flooding client was left without an answer
    assert set(flooded) <= {200, 429, 503}, flooded
    failures = flooded[200] + flooded[429]  # 503s were turned away before any check
    assert (after == 429) == (failures >= address_limit), (after, flooded)
    # Once locked, no more passwords are checked for the address: at most those already
    # in progress (LOGINS_AT_ONCE in each of the 2 workers) fail after the limit.
    assert flooded[200] <= address_limit + 2 * 2
    logged = log.read_text()
    assert "Traceback" not in logged
    assert not re.search(r"Database unavailable", logged)

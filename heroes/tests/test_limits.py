"""Bounded requests (SPEC §11): a body over DATA_UPLOAD_MAX_MEMORY_SIZE gets 413 before
it is read, a request head over MAX_REQUEST_HEADER_SIZE is refused, without a worker
growing, and slow clients cannot hold the server (a head not whole within
REQUEST_HEAD_TIMEOUT seconds, an idle keep-alive connection: closed; with hundreds of
them open, others are served). Shown on `make serve`'s server over raw sockets, in
bounded loops (which also says once where it is ready), and through Django's test
client."""

import json
import shutil
import socket
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.test import Client

from heroes.models import Hero

from .helpers import found, manage
from .server import production_env, request, start_gunicorn

BODY_LIMIT = 2_621_440  # the default, 2.5 MB
HEAD_LIMIT = 65_536
CHUNK = 64 * 1024
HUGE_HEADER = 64 * 1024 * 1024
HEAD_TIMEOUT = 2  # seconds; the default is 10
KEEPALIVE = 5  # gunicorn.conf.py's keepalive
SLOW_CLIENTS = 300
PARTIAL_HEAD = b"GET /heroes/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"


@pytest.fixture(scope="module")
def served(tmp_path_factory, migrated_sqlite, collected_static):
    """make serve's gunicorn on a SQLite database of its own, with a superuser's token."""
    tmp_path = tmp_path_factory.mktemp("served")
    database = tmp_path / "db.sqlite3"
    shutil.copyfile(migrated_sqlite, database)
    env = production_env(
        tmp_path,
        DATABASE_URL=f"sqlite:///{database}",
        STATIC_ROOT=str(collected_static),
        DATA_UPLOAD_MAX_MEMORY_SIZE=str(BODY_LIMIT),
        MAX_REQUEST_HEADER_SIZE=str(HEAD_LIMIT),
        REQUEST_HEAD_TIMEOUT=str(HEAD_TIMEOUT),
    )
    created = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.contrib.auth import get_user_model; from heroes.models import ApiToken; "
        "boss = get_user_model().objects.create_superuser('boss', password=None); "
        "print(ApiToken.issue(boss, 'limits')[1])",
        **env,
    )
    assert created.returncode == 0, created.stderr
    log = tmp_path / "server.log"
    server = start_gunicorn(env, log)
    try:
        yield SimpleNamespace(
            port=int(env["PORT"]),
            base=f"http://127.0.0.1:{env['PORT']}",
            token=created.stdout.strip(),
            server=server,
            database=database,
            log=log,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_make_serve_says_once_where_it_is_ready(served):
    # SPEC §15, shown here on the server these tests start anyway.
    for _ in range(100):  # health answered: the line comes right after
        if ready := [line for line in served.log.read_text().splitlines() if "ready at " in line]:
            break
        time.sleep(0.1)
    assert len(ready) == 1, served.log.read_text()
    assert ready[0].endswith(f"ready at http://127.0.0.1:{served.port}")


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


def read_response(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (or resets it)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def body_of(response: bytes) -> bytes:
    return response.partition(b"\r\n\r\n")[2]


def stored_nicknames(database: Path) -> set[str]:
    with sqlite3.connect(database) as db:
        return {row[0] for row in db.execute("SELECT nickname FROM hrs_heroes")}


# Bodies


@pytest.mark.parametrize(
    ("path", "expect_continue"),
    [("/api/v1/heroes", False), ("/api/v1/heroes", True), ("/accounts/login/", False)],
)
def test_a_body_announced_over_the_limit_is_refused_unread(served, path, expect_continue):
    request_head = head(
        "POST",
        path,
        f"Authorization: Bearer {served.token}",
        "Content-Type: application/json",
        "Content-Length: 3221225472",  # 3 GiB, never sent
        *(["Expect: 100-continue"] if expect_continue else []),
    )
    started = time.monotonic()
    with connect(served.port) as sock:
        sock.sendall(request_head)
        response = read_response(sock)
    assert time.monotonic() - started < 2
    assert status_of(response) == 413
    assert b"100 Continue" not in response  # nor invited the body
    assert b"connection: close" in response.lower()
    if path.startswith("/api/"):
        detail = json.loads(body_of(response))["detail"]
        assert detail == f"The request body is larger than the limit of {BODY_LIMIT} bytes."
    else:
        assert b"<h1>Request too large</h1>" in body_of(response)


def test_a_chunked_body_is_cut_at_the_limit(served):
    chunk = b"%x\r\n%s\r\n" % (CHUNK, b" " * CHUNK)
    with connect(served.port) as sock:
        sock.sendall(
            head(
                "POST",
                "/api/v1/heroes",
                f"Authorization: Bearer {served.token}",
                "Content-Type: application/json",
                "Transfer-Encoding: chunked",
            )
        )
        sent = 0
        while sent <= BODY_LIMIT:
            sock.sendall(chunk)
            sent += CHUNK
        # The body has not ended (no last chunk), yet the answer comes.
        response = read_response(sock)
    assert sent == BODY_LIMIT + CHUNK
    assert status_of(response) == 413
    assert "larger than the limit" in json.loads(body_of(response))["detail"]


def test_bodies_within_the_limit_are_served(served):
    padded = json.dumps({"nickname": "{}", "role": "tank"}) + " " * (BODY_LIMIT - 100)
    bearer = f"Authorization: Bearer {served.token}"
    json_type = "Content-Type: application/json"
    announced = padded.replace("{}", "Announced Ace").encode()
    with connect(served.port) as sock:
        sock.sendall(
            head("POST", "/api/v1/heroes", bearer, json_type, f"Content-Length: {len(announced)}")
            + announced
        )
        assert status_of(sock.recv(65536)) == 201
    chunked = padded.replace("{}", "Chunked Ace").encode()
    with connect(served.port) as sock:
        sock.sendall(
            head("POST", "/api/v1/heroes", bearer, json_type, "Transfer-Encoding: chunked")
        )
        for start in range(0, len(chunked), CHUNK):
            part = chunked[start : start + CHUNK]
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        sock.sendall(b"0\r\n\r\n")
        assert status_of(sock.recv(65536)) == 201
    assert {"Announced Ace", "Chunked Ace"} <= stored_nicknames(served.database)


# Heads


def test_a_head_up_to_the_limit_is_served_and_one_byte_more_refused(served):
    def health_head(padding: int) -> bytes:
        return head("GET", "/api/v1/health", f"X-Padding: {'p' * padding}", "Connection: close")

    at_the_limit = health_head(HEAD_LIMIT - len(health_head(0)))
    assert len(at_the_limit) == HEAD_LIMIT
    with connect(served.port) as sock:
        sock.sendall(at_the_limit)
        assert status_of(read_response(sock)) == 200

    # One byte more, and the head has not even ended.
    with connect(served.port) as sock:
        sock.sendall(at_the_limit[:-4] + b"ppppp")
        response = read_response(sock)
    assert status_of(response) == 431
    assert b"connection: close" in response


def test_pipelined_requests_each_within_the_limit_are_served(served):
    padding = f"X-Padding: {'p' * (HEAD_LIMIT * 2 // 3)}"
    pipelined = head("GET", "/api/v1/health", padding) * 4
    pipelined += head("GET", "/api/v1/health", padding, "Connection: close")
    with connect(served.port) as sock:
        sock.sendall(pipelined)  # read by the server several heads at a time
        response = read_response(sock)
    assert response.count(b"HTTP/1.1 200 OK") == 5


def worker_pids(server) -> list[int]:
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text()
    return sorted(int(pid) for pid in children.split())


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(found(r"VmRSS:\s+(\d+) kB", status)) / 1024


def send_huge_header(port: int) -> bytes | str:
    """A request with a 64 MB header: the server's answer, or how it cut us off."""
    piece = b"a" * (1024 * 1024)
    with connect(port) as sock:
        try:
            sock.sendall(head("GET", "/api/v1/health")[:-2] + b"X-Huge: ")
            for _ in range(HUGE_HEADER // len(piece)):
                sock.sendall(piece)
            sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError) as error:
            return type(error).__name__
        return read_response(sock)


def test_eight_64_mb_headers_at_once_are_refused_without_growing_a_worker(served):
    for _ in range(20):  # let every worker settle first
        assert request(f"{served.base}/api/v1/health")[0] == 200
    workers = worker_pids(served.server)
    before = {pid: rss_mb(pid) for pid in workers}

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as attackers:
        outcomes = list(attackers.map(send_huge_header, [served.port] * 8))
    took = time.monotonic() - started

    for outcome in outcomes:
        assert outcome in ("BrokenPipeError", "ConnectionResetError", b"") or (
            status_of(outcome) == 431
        ), outcome
    assert took < 10
    assert worker_pids(served.server) == workers  # none was restarted
    for pid, rss in before.items():
        assert rss_mb(pid) - rss < 50, (pid, rss, rss_mb(pid))
    assert request(f"{served.base}/api/v1/health")[0] == 200


# Through Django's test client (the body is read by the app, not by the server)


@pytest.mark.django_db
def test_an_api_body_over_the_limit_is_413_json(api_token_client):
    body = json.dumps({"nickname": "Too Big"}) + " " * BODY_LIMIT
    response = api_token_client.post("/api/v1/heroes", body, content_type="application/json")
    assert response.status_code == 413
    assert "larger than the limit" in response.json()["detail"]
    assert not Hero.objects.exists()


@pytest.mark.django_db
def test_a_form_over_the_limit_is_a_413_page(client, writer):
    client.force_login(writer)
    response = client.post("/heroes/new/", {"nickname": "Too Big", "notes": "x" * BODY_LIMIT})
    assert response.status_code == 413
    assert "<h1>Request too large</h1>" in response.content.decode()
    assert not Hero.objects.exists()


@pytest.fixture
def api_token_client(writer_token) -> Client:
    return Client(headers={"Authorization": f"Bearer {writer_token}"})


# Slow clients


def seconds_until_closed(sock: socket.socket, started: float, limit: float) -> float:
    """How long after `started` the server closed `sock` (it sends nothing before), or
    fail once `limit` seconds have passed."""
    sock.settimeout(max(limit - (time.monotonic() - started), 0.01))
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for over {limit} s")
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def test_hundreds_of_unfinished_heads_are_closed_and_others_are_served(served):
    started = time.monotonic()
    slow = [connect(served.port) for _ in range(SLOW_CLIENTS)]
    for n, sock in enumerate(slow):
        if n % 3:  # a third sends nothing at all
            sock.sendall(PARTIAL_HEAD)

    # Meanwhile other clients are served, on new connections.
    for _ in range(20):
        status, body, *_ = request(f"{served.base}/heroes/")
        assert status == 200, body
    assert request(f"{served.base}/api/v1/health")[0] == 200

    closed_after = [seconds_until_closed(sock, started, HEAD_TIMEOUT + 8) for sock in slow]
    for sock in slow:
        sock.close()
    print(
        f"{SLOW_CLIENTS} slow connections closed by the server after "
        f"{min(closed_after):.1f}-{max(closed_after):.1f} s (REQUEST_HEAD_TIMEOUT={HEAD_TIMEOUT})"
    )
    assert min(closed_after) >= HEAD_TIMEOUT - 0.5  # not before their time
    assert request(f"{served.base}/heroes/")[0] == 200


def test_a_head_trickling_in_is_closed_even_though_bytes_keep_coming(served):
    with connect(served.port) as sock:
        started = time.monotonic()
        for byte in PARTIAL_HEAD[:24]:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.25)  # 24 bytes over 6 s: longer than the timeout
        took = seconds_until_closed(sock, started, HEAD_TIMEOUT + 8)
    assert HEAD_TIMEOUT - 0.5 <= took < 6


def test_a_slow_but_whole_head_is_served_and_the_idle_connection_then_closed(served):
    with connect(served.port) as sock:
        head = b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        for piece in (head[:10], head[10:30], head[30:]):
            sock.sendall(piece)
            time.sleep(0.4)  # 1.2 s in all, within the timeout
        response = b""
        while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
            response += sock.recv(65536)
        assert response.startswith(b"HTTP/1.1 200 ")
        # Kept alive, then closed once idle: after REQUEST_HEAD_TIMEOUT here, shorter
        # than gunicorn's keepalive.
        answered = time.monotonic()
        took = seconds_until_closed(sock, answered, KEEPALIVE + 5)
    assert HEAD_TIMEOUT - 0.5 <= took < KEEPALIVE

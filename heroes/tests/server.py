"""`make serve`'s server (gunicorn + uvicorn workers, heroes_site/gunicorn.conf.py) for
tests that need the real thing: a free port, a production environment, plain HTTP; its
first user and token; clients over real HTTP."""

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import Message
from http.cookiejar import CookieJar
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlencode

import pytest

from .helpers import REPO_ROOT, csrf_token_in, manage


def free_port() -> int:
    """A port free on every address, as the servers bind it (0.0.0.0). A port free on
    127.0.0.1 only may be one a client from 127.0.0.2 (the flood drill's) has just
    used: in TIME_WAIT there for a minute, it refuses a bind to 0.0.0.0."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))  # noqa: S104 (a probe, closed at once)
        return sock.getsockname()[1]


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The environment of `HTTPS=False make serve` on a free port; overrides win."""
    return {
        **os.environ,
        "DEBUG": "False",
        "HTTPS": "False",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "STATIC_ROOT": str(tmp_path / "static"),
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "2",
        **overrides,
    }


class Answer(NamedTuple):
    status: int
    body: dict | str  # JSON or text
    took: float  # seconds
    headers: Message
    url: str  # after redirects


def exchange(
    opener: urllib.request.OpenerDirector,
    url: str,
    method: str = "GET",
    *,
    json_body: dict | None = None,
    form: dict | None = None,
    token: str = "",
) -> Answer:
    """One request through `opener`, with a JSON body or a form, and a bearer token."""
    headers, data = {}, None
    if json_body is not None:
        headers["Content-Type"], data = "application/json", json.dumps(json_body).encode()
    if form is not None:
        data = urlencode(form).encode()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    sent = urllib.request.Request(url, data, headers, method=method)
    started = time.monotonic()
    try:
        with opener.open(sent, timeout=30) as response:
            status, raw, answered = response.status, response.read(), response
    except urllib.error.HTTPError as error:
        status, raw, answered = error.code, error.read(), error
    took = time.monotonic() - started
    text = raw.decode()
    is_json = answered.headers.get_content_type() == "application/json"
    return Answer(
        status, json.loads(text) if is_json else text, took, answered.headers, answered.url
    )


def request(url: str, method: str = "GET", body: dict | None = None, token: str = "") -> Answer:
    """One request without cookies."""
    return exchange(urllib.request.build_opener(), url, method, json_body=body, token=token)


class Visitor:
    """HTTP requests to the server, keeping cookies like a browser, and sending a
    bearer token when given one."""

    def __init__(self, base: str, token: str = "") -> None:
        self.base = base
        self.token = token
        self.cookies = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def request(
        self, method: str, path: str, *, json_body: dict | None = None, form: dict | None = None
    ) -> Answer:
        return exchange(
            self.opener, self.base + path, method, json_body=json_body, form=form, token=self.token
        )

    def get(self, path: str) -> tuple[int, dict | str]:
        return self.request("GET", path)[:2]

    def form_token(self, path: str) -> str:
        status, page = self.get(path)
        assert status == 200, (path, status)
        return csrf_token_in(str(page))

    def log_in(self, username: str, password: str) -> None:
        form = {"username": username, "password": password}
        form["csrfmiddlewaretoken"] = self.form_token("/accounts/login/")
        answer = self.request("POST", "/accounts/login/", form=form)
        assert answer.status == 200 and answer.url.endswith("/heroes/"), answer[:2]

    def create_with_form(self, nickname: str) -> str:
        """Create a hero through the HTML form; its uuid."""
        form = {"nickname": nickname, "role": "mage"}
        form["csrfmiddlewaretoken"] = self.form_token("/heroes/new/")
        answer = self.request("POST", "/heroes/new/", form=form)
        assert answer.status == 200, answer.status
        return answer.url.rstrip("/").rsplit("/", 1)[-1]

    def create_with_api(self, nickname: str) -> str:
        status, body = self.request("POST", "/api/v1/heroes", json_body={"nickname": nickname})[:2]
        assert status == 201 and isinstance(body, dict), (status, body)
        return body["uuid"]


def eventually(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def prepare_to_serve(env: dict[str, str]) -> Callable[..., str]:
    """Migrate and collect the static files with `env`, as make serve does before it
    serves; manage.py with `env` for more (its output; a failure fails the test)."""

    def run(*args: str) -> str:
        result = manage(*args, **env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    run("migrate", "--no-input")
    run("collectstatic", "--no-input")
    return run


def superuser_token(run: Callable[..., str], password: str | None = None) -> str:
    """Make the superuser `drill` (with `password`, else none) with manage.py's `run`
    (prepare_to_serve's); an API token of it (create_api_token's last line)."""
    output = run(
        "shell",
        "--no-imports",
        "-c",
        "from django.contrib.auth import get_user_model; "
        "from django.core.management import call_command; "
        f"get_user_model().objects.create_superuser('drill', password={password!r}); "
        "call_command('create_api_token', 'drill')",
    )
    return output.strip().splitlines()[-1]


def start_gunicorn(env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start the server with `env`, its output going to `log`, and wait until its
    health check answers. The caller terminates it."""
    base = f"http://127.0.0.1:{env['PORT']}"
    with log.open("w") as log_file:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "heroes_site/gunicorn.conf.py",
                "heroes_site.asgi:application",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    for _ in range(100):
        with contextlib.suppress(OSError):
            if request(f"{base}/api/v1/health")[0] == 200:
                return server
        time.sleep(0.1)
    server.terminate()
    server.wait(timeout=30)
    pytest.fail(f"the server did not start:\n{log.read_text()}")

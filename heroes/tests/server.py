"""`make serve`'s server (gunicorn + uvicorn workers, heroes_site/gunicorn.conf.py) for
tests that need the real thing: a free port, a production environment, plain HTTP."""

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
from pathlib import Path

import pytest

from .helpers import REPO_ROOT, manage


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
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


def request(
    url: str, method: str = "GET", body: dict | None = None, token: str = ""
) -> tuple[int, dict | str, float]:
    """(status, JSON or text body, seconds taken)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    started = time.monotonic()
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, data, headers, method=method), timeout=30
        ) as response:
            status, raw, content_type = (
                response.status,
                response.read(),
                response.headers.get_content_type(),
            )
    except urllib.error.HTTPError as error:
        status, raw, content_type = error.code, error.read(), error.headers.get_content_type()
    took = time.monotonic() - started
    text = raw.decode()
    return status, json.loads(text) if content_type == "application/json" else text, took


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

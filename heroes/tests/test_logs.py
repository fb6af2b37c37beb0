"""Log lines cannot be forged (SPEC §11): control characters in whatever a request
puts into a log line are escaped, in the text and the JSON format, whichever logger
writes it (the request log, Django's, the API's)."""

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from heroes.models import Hero
from heroes_site.log_formats import escape_control_characters

from .helpers import REPO_ROOT, found
from .server import free_port

pytestmark = pytest.mark.django_db

BOTH_FORMATS = pytest.mark.parametrize("server_log", ["text", "json"], indirect=True)

# A genuine-looking line, as issue 9 sent it after a %0a in the path.
FORGED = "2026-11-29 23:59:59,000 INFO heroes.requests GET /admin/ 200 0.1ms request_id=forged"
FORGED_PATH = "/heroes/%0a" + quote(FORGED) + "%0d%1b[2J"
ESCAPED_PATH = "/heroes/\\n" + FORGED + "\\r\\x1b[2J"
# An exception's message carrying them; the traceback's source line shows only its name.
HOSTILE_MESSAGE = "boom\n" + FORGED + chr(27) + "[2J"
RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def assert_no_raw_controls(log: str) -> None:
    assert "\r" not in log
    assert "\x1b" not in log


@BOTH_FORMATS
def test_a_path_cannot_forge_a_log_line(client, server_log, request):
    assert client.get(FORGED_PATH).status_code == 404
    log = server_log.getvalue()
    [line] = log.splitlines()  # one request, one line
    assert_no_raw_controls(log)
    if request.node.callspec.params["server_log"] == "json":
        entry = json.loads(line)
        assert entry["path"] == ESCAPED_PATH  # read back, the field is still one line
        assert entry["message"].startswith(f"GET {ESCAPED_PATH} 404 ")
    else:
        assert f" INFO heroes.requests GET {ESCAPED_PATH} 404 " in line


@BOTH_FORMATS
def test_a_traceback_cannot_forge_a_log_line(client, server_log, monkeypatch, request):
    def explode(*args, **kwargs):
        raise RuntimeError(HOSTILE_MESSAGE)

    for listing in ("listing", "cursor_page"):  # the pages', the API's
        monkeypatch.setattr(Hero.objects, listing, explode)
    client.raise_request_exception = False
    assert client.get("/heroes/").status_code == 500  # django.request logs the traceback
    assert client.get("/api/v1/heroes").status_code == 500  # so does heroes.api
    log = server_log.getvalue()
    assert_no_raw_controls(log)
    assert "\\x1b[2J" in log
    if request.node.callspec.params["server_log"] == "json":
        entries = [json.loads(line) for line in log.splitlines()]
        loggers = [entry["logger"] for entry in entries]
        tracebacks = "".join(entry.get("exception", "") for entry in entries)
        assert "request_id=forged\\x1b[2J" in tracebacks  # escaped in the field itself
        assert "\x1b" not in tracebacks
    else:
        # A traceback's lines are indented: only a record's own line starts at the margin.
        records = [line for line in log.splitlines() if not line.startswith("  ")]
        assert all(RECORD_START.match(line) for line in records), records
        assert not any("request_id=forged" in line for line in records)
        assert "request_id=forged" in log
        loggers = [line.split()[3] for line in records]
    assert {"django.request", "heroes.api", "heroes.requests"} <= set(loggers)


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("\x00\x1b[31m\x7f", "\\x00\\x1b[31m\\x7f"),
        ("\x85next line", "\\x85next line"),
        ("\u2028\u2029", "\\u2028\\u2029"),
        ("evil\u202etxt.exe\u2066", "evil\\u202etxt.exe\\u2066"),  # bidi controls
        ("Ärgerlich Öz, 北京, 🦸", "Ärgerlich Öz, 北京, 🦸"),  # plain text stays
    ],
)
def test_control_characters_are_written_as_escapes(text, escaped):
    assert escape_control_characters(text) == escaped


# Each line once, with the request id of the request it was written for (SPEC §15)


@BOTH_FORMATS
def test_every_line_written_for_a_request_carries_its_id(client, server_log, monkeypatch, request):
    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    for listing in ("listing", "cursor_page"):  # the pages', the API's
        monkeypatch.setattr(Hero.objects, listing, explode)
    client.raise_request_exception = False
    assert client.get("/heroes/", headers={"X-Request-ID": "page-1"}).status_code == 500
    assert client.get("/api/v1/heroes", headers={"X-Request-ID": "api-1"}).status_code == 500
    logging.getLogger("heroes").warning("between requests")
    log = server_log.getvalue()
    if request.node.callspec.params["server_log"] == "json":
        entries = [json.loads(line) for line in log.splitlines()]
        ids = [(entry["logger"], entry.get("request_id")) for entry in entries]
    else:
        records = [line for line in log.splitlines() if not line.startswith("  ")]
        ids = [(line.split()[3], found(r" request_id=(\S+)$", line)) for line in records[:-1]]
        ids.append((records[-1].split()[3], None))
        assert "request_id" not in records[-1]
    assert ids == [
        ("django.request", "page-1"),  # Internal Server Error, with its traceback
        ("heroes.requests", "page-1"),
        ("heroes.api", "api-1"),  # Unhandled error, with its traceback
        ("heroes.requests", "api-1"),
        ("django.request", "api-1"),  # after the middleware: a 500 response
        ("heroes", None),
    ]


@pytest.mark.parametrize("server_log", ["json"], indirect=True)
def test_json_lines_are_timed_in_iso_8601_utc(client, server_log):
    before = datetime.now(UTC)
    client.get("/api/v1/health")
    entry = json.loads(server_log.getvalue().splitlines()[0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    at = datetime.fromisoformat(entry["time"])
    assert at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= at <= datetime.now(UTC)


def test_runserver_writes_each_line_once(sqlite_url, tmp_path):
    port = free_port()
    log = tmp_path / "runserver.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}"],  # autoreloading
            cwd=REPO_ROOT,
            env={**os.environ, "DEBUG": "True", "DATABASE_URL": sqlite_url, "LOG_FORMAT": "text"},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the reloader's child goes with it
        )
    try:
        for path in ["/api/v1/health", "/nowhere", "/heroes/"]:
            status = None
            for _ in range(300):
                status = request(f"http://127.0.0.1:{port}{path}")
                if status:
                    break
                time.sleep(0.1)
            assert status, log.read_text()
        for _ in range(50):
            if "GET /heroes/ 200" in log.read_text():
                break
            time.sleep(0.1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    lines = log.read_text().splitlines()
    assert sum("Watching for file changes" in line for line in lines) == 1, lines
    for logged in ["GET /api/v1/health 200", "GET /nowhere 404", "GET /heroes/ 200"]:
        assert sum(logged in line for line in lines) == 1, lines
    assert not [line for line in lines if "HTTP/1.1" in line], lines  # runserver's own


def request(url: str) -> int | None:
    """The status of a GET, or None if nothing answers yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None

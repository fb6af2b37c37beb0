"""What production relies on: the deployment checklist, security headers, request
logs without secrets, serving settings, and migrations safe to run from replicas."""

import gc
import json
import logging
import os
import runpy
import secrets
import subprocess
import sys

import psycopg
import pytest
from django.conf import settings
from django.db import OperationalError
from django.test import Client

from heroes.models import ApiToken, Hero
from heroes_site import migrations_state
from heroes_site.db.transports import OnDjangoConnections
from heroes_site.log_formats import JsonFormatter

from .helpers import REPO_ROOT, manage

PRODUCTION = {
    "DEBUG": "False",
    "HTTPS": "True",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "heroes.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://heroes.example.com",
}


def test_production_settings_pass_the_deployment_checklist():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


# Sent through the production ASGI application by a process of its own, so that
# settings.py is read with the production environment.
HEALTH_WITHOUT_AND_WITH_X_FORWARDED_PROTO = """
import json
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from heroes_site.asgi import application

async def get_health(*headers):
    scope = {"type": "http", "method": "GET", "scheme": "http", "path": "/api/v1/health",
             "headers": [(b"host", b"heroes.example.com"), *headers]}
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(timeout=10)
    while (await communicator.receive_output(timeout=10)).get("more_body"):
        pass
    headers = {name.lower(): value.decode() for name, value in start["headers"]}
    return start["status"], headers.get(b"location", "")

print(json.dumps([async_to_sync(get_health)(),
                  async_to_sync(get_health)((b"x-forwarded-proto", b"https"))]))
"""


def test_https_requests_from_the_tls_proxy_are_not_redirected(sqlite_url):
    # The proxy speaks plain http to the server and says X-Forwarded-Proto: https;
    # without SECURE_PROXY_SSL_HEADER, SECURE_SSL_REDIRECT would send every request
    # back to https, for ever.
    result = manage(
        "shell",
        "-c",
        HEALTH_WITHOUT_AND_WITH_X_FORWARDED_PROTO,
        **PRODUCTION,
        DATABASE_URL=sqlite_url,
    )
    assert result.returncode == 0, result.stderr
    plain, proxied = json.loads(result.stdout.splitlines()[-1])
    assert plain == [301, "https://heroes.example.com/api/v1/health"]
    assert proxied == [200, ""]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/admin/login/", "/api/v1/health", "/api/v1/nowhere"])
def test_responses_carry_the_security_headers(client, path):
    response = client.get(path)
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "http" not in csp and "*" not in csp  # no origin but the site's own


def test_gunicorn_reads_port_and_workers_from_the_environment(monkeypatch):
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    config = runpy.run_path(str(REPO_ROOT / "heroes_site" / "gunicorn.conf.py"))
    assert config["bind"] == "0.0.0.0:9123"
    assert config["workers"] == 3
    assert config["worker_class"] == "heroes_site.server.BoundedUvicornWorker"
    assert config["control_socket_disable"] is True
    assert config["graceful_timeout"] > 0


@pytest.mark.django_db
def test_gunicorn_workers_learn_the_migrations_and_freeze_the_app_out_of_gc_scans():
    migrations_state.state.forget()
    config = runpy.run_path(str(REPO_ROOT / "heroes_site" / "gunicorn.conf.py"))
    try:
        config["post_worker_init"](worker=None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert migrations_state.state.pending is False  # known before the first request


def test_no_state_lives_in_process_memory():
    assert settings.SESSION_ENGINE == "django.contrib.sessions.backends.db"
    assert settings.MESSAGE_STORAGE.endswith("session.SessionStorage")


# Request logs


def request_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "heroes.requests"]


@pytest.mark.django_db
def test_each_request_logs_one_line_with_its_id(client, caplog):
    caplog.set_level(logging.INFO, logger="heroes.requests")
    response = client.get("/api/v1/heroes", {"role": "mage"})
    [record] = request_records(caplog)
    request_id = response["X-Request-ID"]
    assert len(request_id) == 32
    assert (record.method, record.path, record.status, record.request_id) == (
        "GET",
        "/api/v1/heroes",
        200,
        request_id,
    )
    assert record.duration_ms >= 0
    assert record.getMessage().startswith("GET /api/v1/heroes 200 ")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("sent", "kept"),
    [("abc-123.trace:1", True), ("", False), ("bad id\nforged line", False), ("x" * 129, False)],
)
def test_a_clients_request_id_is_echoed_when_it_is_plain(client, caplog, sent, kept):
    caplog.set_level(logging.INFO, logger="heroes.requests")
    response = client.get("/api/v1/health", headers={"X-Request-ID": sent})
    assert (response["X-Request-ID"] == sent) is kept
    assert request_records(caplog)[0].request_id == response["X-Request-ID"]


@pytest.mark.django_db
def test_json_log_lines_are_objects_with_the_request_fields(client, caplog):
    caplog.set_level(logging.INFO, logger="heroes.requests")
    client.get("/api/v1/health", headers={"X-Request-ID": "req-1"})
    line = JsonFormatter().format(request_records(caplog)[0])
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["logger"] == "heroes.requests"
    assert {k: entry[k] for k in ("method", "path", "status", "request_id")} == {
        "method": "GET",
        "path": "/api/v1/health",
        "status": 200,
        "request_id": "req-1",
    }
    assert isinstance(entry["duration_ms"], float)


@pytest.mark.django_db(transaction=True)
def test_credentials_never_reach_the_logs(caplog, capsys, writer, writer_token, monkeypatch):
    caplog.set_level(logging.DEBUG)
    password = "writer-pass-123"
    client = Client()
    client.post("/admin/login/", {"username": "writer", "password": password})
    session_cookie = client.cookies.get(settings.SESSION_COOKIE_NAME)
    bearer = {"Authorization": f"Bearer {writer_token}"}
    client.post("/api/v1/heroes", {"nickname": "Thor"}, "application/json", headers=bearer)
    client.post("/api/v1/heroes", {"nickname": "Thor"}, "application/json", headers=bearer)
    client.get(f"/api/v1/heroes?token={writer_token}")
    client.post(
        "/api/v1/heroes", {}, "application/json", headers={"Authorization": "Basic c2VjcmV0"}
    )

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(Hero.objects, "cursor_page", explode)
    client.get("/api/v1/heroes", headers=bearer)

    logged = "\n".join(
        [logging.Formatter().format(r) for r in caplog.records]
        + [JsonFormatter().format(r) for r in caplog.records]
        + list(capsys.readouterr())
    )
    assert "POST /api/v1/heroes 201" in logged and "GET /api/v1/heroes 500" in logged
    secrets_sent = [writer_token, password, "c2VjcmV0", ApiToken.hash(writer_token)]
    if session_cookie:
        secrets_sent.append(session_cookie.value)
    for secret in secrets_sent:
        assert secret not in logged


# Database outages (the real-server drill is test_outage.py)


@pytest.mark.django_db
def test_api_answers_503_json_when_the_database_is_unreachable(client, monkeypatch):
    async def unreachable(*args, **kwargs):
        raise OperationalError("couldn't get a connection after 5.00 sec")

    monkeypatch.setattr(OnDjangoConnections, "execute_all", unreachable)
    response = client.get("/api/v1/heroes")
    assert response.status_code == 503
    assert response.json() == {"detail": "The database is unavailable; try again shortly."}
    assert response["Retry-After"] == "5"


# Migrations from several replicas at once


def test_concurrent_migrates_on_an_empty_database_both_succeed(fresh_postgres_database):
    # Two replicas starting at once: the migrate command takes PostgreSQL's advisory lock.
    env = {**os.environ, "DATABASE_URL": fresh_postgres_database, "DATABASE_REPLICA_URLS": ""}
    migrates = [
        subprocess.Popen(
            [sys.executable, "manage.py", "migrate", "--no-input"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [m.communicate(timeout=120)[0] for m in migrates]
    assert [m.returncode for m in migrates] == [0, 0], outputs
    with psycopg.connect(fresh_postgres_database) as db:
        applied = db.execute("SELECT count(*) FROM django_migrations").fetchone()[0]
        constraints = {
            row[0]
            for row in db.execute(
                "SELECT conname FROM pg_constraint WHERE conrelid = 'hrs_heroes'::regclass"
            )
        }
    assert applied > 0
    assert {"ck_hrs_heroes_role", "ck_hrs_heroes_nickname"} <= constraints

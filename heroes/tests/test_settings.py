"""Configuration comes from the environment and fails early with one readable line."""

import runpy
import tomllib
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from heroes_site.settings import BASE_DIR, database_config

from .helpers import load_settings, manage

POOL_OPTIONS = {"min_size", "max_size", "timeout", "reconnect_timeout"}
BAD_DATABASE_URL = (
    "DATABASE_URL must look like sqlite:///db.sqlite3 or postgres://USER:PASSWORD@HOST:5432/NAME"
)


def test_production_without_secret_key_fails_with_one_line():
    result = manage("check", DEBUG="False", SECRET_KEY="")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Configuration error: SECRET_KEY is not set: it is required when DEBUG is False "
        "(see .env.example)"
    ]


def test_malformed_database_url_fails_with_one_line():
    result = manage("check", DATABASE_URL="postgres://user@host:port/db")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"Configuration error: {BAD_DATABASE_URL}"]


@pytest.mark.parametrize(("name", "value"), [("REQUEST_HEAD_TIMEOUT", "abc"), ("LOGIN_WAIT", "0")])
def test_a_bad_number_of_seconds_fails_with_one_line(name, value):
    result = manage("check", **{name: value})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"Configuration error: {name} must be a number of seconds above 0, such as 3 or 0.5, "
        f"not '{value}'"
    ]


@pytest.mark.parametrize(
    "url", ["nonsense", "mysql://user@host/db", "postgres://user@host:port/db", "postgres://"]
)
def test_malformed_database_urls_are_refused(url):
    with pytest.raises(ImproperlyConfigured) as caught:
        database_config(url)
    assert str(caught.value) == BAD_DATABASE_URL


def test_a_postgresql_url_keeps_its_libpq_options_beside_the_pool():
    config = database_config(
        "postgres://u@h1:5432,h2:5433/heroes?sslmode=require&target_session_attrs=read-write"
    )
    options = config["OPTIONS"]
    assert (config["HOST"], config["PORT"], options["sslmode"]) == ("h1,h2", "5432,5433", "require")
    assert options["target_session_attrs"] == "read-write"
    assert set(options["pool"]) == POOL_OPTIONS
    assert options["connect_timeout"] == 5


def test_settings_come_from_the_environment(monkeypatch):
    settings = load_settings(
        monkeypatch,
        DEBUG="False",
        SECRET_KEY="x" * 60,
        PROJECT_NAME="Guild",
        VERSION="9.9.9",
        DESCRIPTION="Our guild.",
        API_V1_PREFIX="/api/v2",
        ALLOWED_HOSTS="heroes.example.com,api.example.com",
        CSRF_TRUSTED_ORIGINS="https://heroes.example.com",
        LOG_FORMAT="json",
    )
    assert (
        settings["PROJECT_NAME"],
        settings["VERSION"],
        settings["DESCRIPTION"],
        settings["API_V1_PREFIX"],
        settings["ALLOWED_HOSTS"],
        settings["CSRF_TRUSTED_ORIGINS"],
        settings["LOGGING"]["handlers"]["console"]["formatter"],
    ) == (
        "Guild",
        "9.9.9",
        "Our guild.",
        "/api/v2",
        ["heroes.example.com", "api.example.com"],
        ["https://heroes.example.com"],
        "json",
    )
    # HTTPS follows DEBUG: on in production.
    assert settings["SECURE_SSL_REDIRECT"] and settings["SESSION_COOKIE_SECURE"]
    assert settings["SECURE_HSTS_SECONDS"] > 0


def test_https_can_be_turned_off_for_local_production_runs(monkeypatch):
    settings = load_settings(monkeypatch, DEBUG="False", SECRET_KEY="x" * 60, HTTPS="False")
    assert settings["DEBUG"] is False
    assert "SECURE_SSL_REDIRECT" not in settings


def test_development_needs_no_secret_key(monkeypatch):
    settings = load_settings(monkeypatch, DEBUG="True", SECRET_KEY="")
    assert settings["SECRET_KEY"]
    assert "SECURE_SSL_REDIRECT" not in settings


def test_unknown_log_format_is_refused(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="LOG_FORMAT"):
        load_settings(monkeypatch, LOG_FORMAT="xml")


# Every variable given a bad value: one line naming it, what it must be and what it was.
WHOLE = "must be a whole number"
BAD_VALUES = [
    ("DEBUG", "maybe", "DEBUG must be True or False, not 'maybe'"),
    ("HTTPS", "sometimes", "HTTPS must be True or False, not 'sometimes'"),
    ("DATABASE_POOL_MIN_SIZE", "-1", f"DATABASE_POOL_MIN_SIZE {WHOLE} of at least 0, not '-1'"),
    ("DATABASE_POOL_MAX_SIZE", "abc", f"DATABASE_POOL_MAX_SIZE {WHOLE} of at least 1, not 'abc'"),
    ("DATABASE_POOL_MAX_SIZE", "0", f"DATABASE_POOL_MAX_SIZE {WHOLE} of at least 1, not '0'"),
    (
        "DATABASE_POOL_TIMEOUT",
        "3s",
        "DATABASE_POOL_TIMEOUT must be a number of seconds above 0, such as 3 or 0.5, not '3s'",
    ),
    (
        "DATABASE_REPLICA_TIMEOUT",
        "nan",
        "DATABASE_REPLICA_TIMEOUT must be a number of seconds above 0, such as 3 or 0.5, not 'nan'",
    ),
    (
        "DATA_UPLOAD_MAX_MEMORY_SIZE",
        "2MB",
        f"DATA_UPLOAD_MAX_MEMORY_SIZE {WHOLE} of bytes of at least 1, not '2MB'",
    ),
    (
        "MAX_REQUEST_HEADER_SIZE",
        "64k",
        f"MAX_REQUEST_HEADER_SIZE {WHOLE} of bytes of at least 1, not '64k'",
    ),
    ("AXES_FAILURE_LIMIT", "five", f"AXES_FAILURE_LIMIT {WHOLE} of at least 1, not 'five'"),
    (
        "AXES_COOLOFF_MINUTES",
        "1.5",
        f"AXES_COOLOFF_MINUTES {WHOLE} of minutes of at least 1, not '1.5'",
    ),
    (
        "LOG_LEVEL",
        "LOUD",
        "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not 'LOUD'",
    ),
    ("LOG_FORMAT", "xml", "LOG_FORMAT must be one of text, json, not 'xml'"),
    ("API_V1_PREFIX", "api", "API_V1_PREFIX must be a path such as /api/v1, not 'api'"),
    ("WEB_CONCURRENCY", "many", f"WEB_CONCURRENCY {WHOLE} of at least 1, not 'many'"),
]


@pytest.mark.parametrize(("name", "value", "line"), BAD_VALUES, ids=lambda v: str(v)[:30])
def test_a_bad_value_is_refused_in_one_line_naming_the_variable(monkeypatch, name, value, line):
    postgresql = "postgres://hero@db.example.com:5432/heroes"  # the pool's variables count
    with pytest.raises(ImproperlyConfigured) as caught:
        load_settings(monkeypatch, DATABASE_URL=postgresql, SECRET_KEY="x" * 60, **{name: value})
    assert str(caught.value) == line


def test_a_pool_smaller_than_its_minimum_is_refused(monkeypatch):
    with pytest.raises(ImproperlyConfigured) as caught:
        load_settings(
            monkeypatch,
            DATABASE_URL="postgres://hero@db.example.com:5432/heroes",
            DATABASE_POOL_MIN_SIZE="20",
            DATABASE_POOL_MAX_SIZE="10",
        )
    assert str(caught.value) == (
        "DATABASE_POOL_MAX_SIZE (10) must be at least DATABASE_POOL_MIN_SIZE (20)"
    )


@pytest.mark.parametrize(
    ("value", "debug"), [("true", True), ("False", False), ("1", True), ("off", False)]
)
def test_booleans_are_read_as_people_write_them(monkeypatch, value, debug):
    assert load_settings(monkeypatch, DEBUG=value, SECRET_KEY="x" * 60)["DEBUG"] is debug


def test_empty_values_take_the_defaults(monkeypatch):
    settings = load_settings(
        monkeypatch, DEBUG="True", DATA_UPLOAD_MAX_MEMORY_SIZE="", LOG_LEVEL=""
    )
    assert settings["DATA_UPLOAD_MAX_MEMORY_SIZE"] == 2_621_440
    assert settings["LOGGING"]["root"]["level"] == "INFO"


def test_manage_py_stops_on_each_bad_value_with_one_line():
    for name, value, line in [BAD_VALUES[0], BAD_VALUES[3], BAD_VALUES[7], BAD_VALUES[11]]:
        result = manage("check", **{name: value})
        assert result.returncode != 0
        assert result.stderr.splitlines() == [f"Configuration error: {line}"]


def test_gunicorn_stops_on_a_bad_port_with_one_line(monkeypatch):
    monkeypatch.setenv("PORT", "http")
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(BASE_DIR / "heroes_site" / "gunicorn.conf.py"))
    assert str(exited.value.code) == (
        "Configuration error: PORT must be a whole number from 0 to 65535, not 'http'"
    )


def test_login_throttling_comes_from_the_environment(monkeypatch):
    settings = load_settings(monkeypatch, AXES_FAILURE_LIMIT="3", AXES_COOLOFF_MINUTES="30")
    assert settings["AXES_FAILURE_LIMIT"] == 3
    assert settings["AXES_COOLOFF_TIME"] == timedelta(minutes=30)
    assert settings["AXES_LOCKOUT_PARAMETERS"] == [["username", "ip_address"]]
    assert settings["AUTHENTICATION_BACKENDS"][0] == "axes.backends.AxesStandaloneBackend"


@pytest.mark.parametrize("name", ["AXES_FAILURE_LIMIT", "AXES_COOLOFF_MINUTES"])
@pytest.mark.parametrize("value", ["0", "-1", "five", "1.5"])
def test_login_throttling_needs_whole_numbers_of_at_least_one(monkeypatch, name, value):
    with pytest.raises(ImproperlyConfigured, match=f"^{name} must be a whole number"):
        load_settings(monkeypatch, **{name: value})


def test_sqlite_path_is_relative_to_the_repo_root():
    config = database_config("sqlite:///db.sqlite3")
    assert config["NAME"] == str(BASE_DIR / "db.sqlite3")
    assert "pool" not in config.get("OPTIONS", {})


def test_postgresql_uses_a_connection_pool():
    config = database_config("postgres://hero:secret@db.example.com:5432/heroes")
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["NAME"], config["USER"], config["HOST"], config["PORT"]) == (
        "heroes",
        "hero",
        "db.example.com",
        5432,
    )
    assert config["CONN_MAX_AGE"] == 0
    assert set(config["OPTIONS"]["pool"]) == POOL_OPTIONS


def test_malformed_url_error_does_not_echo_the_password():
    with pytest.raises(ImproperlyConfigured) as caught:
        database_config("postgres://hero:s3cr3t@db:port/heroes")
    assert "s3cr3t" not in str(caught.value)


def test_version_defaults_to_the_package_version(monkeypatch):
    pyproject = tomllib.loads((BASE_DIR / "pyproject.toml").read_text())
    assert load_settings(monkeypatch, VERSION="")["VERSION"] == pyproject["project"]["version"]


@pytest.mark.django_db
def test_postgresql_connections_come_from_the_pool():
    pooled = getattr(connection, "pool", None) is not None
    assert pooled == (connection.vendor == "postgresql")

"""Configuration comes from the environment and fails early with one readable line."""

import tomllib

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from heroes_site.settings import BASE_DIR, database_config

from .conftest import manage


def test_production_without_secret_key_fails_with_one_line():
    result = manage("check", DEBUG="False", SECRET_KEY="")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Configuration error: SECRET_KEY is not set: it is required when DEBUG is False "
        "(see .env.example)"
    ]


@pytest.mark.parametrize(
    "url", ["nonsense", "mysql://user@host/db", "postgres://user@host:port/db", "postgres://"]
)
def test_malformed_database_url_fails_with_one_line(url):
    result = manage("check", DATABASE_URL=url)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Configuration error: DATABASE_URL must look like sqlite:///db.sqlite3 or "
        "postgres://USER:PASSWORD@HOST:5432/NAME"
    ]


def test_production_settings_pass_check():
    result = manage(
        "check", DEBUG="False", SECRET_KEY="x" * 60, DATABASE_URL="sqlite:///db.sqlite3"
    )
    assert result.returncode == 0, result.stderr


def test_settings_come_from_the_environment():
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; "
        "print(s.PROJECT_NAME, s.VERSION, s.DESCRIPTION, s.API_V1_PREFIX, s.ALLOWED_HOSTS, "
        "s.CSRF_TRUSTED_ORIGINS, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE)",
        DEBUG="False",
        SECRET_KEY="x" * 60,
        PROJECT_NAME="Guild",
        VERSION="9.9.9",
        DESCRIPTION="Our guild.",
        API_V1_PREFIX="/api/v2",
        ALLOWED_HOSTS="heroes.example.com,api.example.com",
        CSRF_TRUSTED_ORIGINS="https://heroes.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "Guild 9.9.9 Our guild. /api/v2 ['heroes.example.com', 'api.example.com'] "
        "['https://heroes.example.com'] True True"
    )


def test_https_can_be_turned_off_for_local_production_runs():
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.DEBUG)",
        DEBUG="False",
        SECRET_KEY="x" * 60,
        HTTPS="False",
    )
    assert result.stdout.strip() == "False False", result.stderr


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
    assert set(config["OPTIONS"]["pool"]) == {"min_size", "max_size", "timeout"}


def test_malformed_url_error_does_not_echo_the_password():
    with pytest.raises(ImproperlyConfigured) as caught:
        database_config("postgres://hero:s3cr3t@db:port/heroes")
    assert "s3cr3t" not in str(caught.value)


def test_version_defaults_to_the_package_version():
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; print(s.VERSION)",
        VERSION="",
    )
    pyproject = tomllib.loads((BASE_DIR / "pyproject.toml").read_text())
    assert result.stdout.strip() == pyproject["project"]["version"], result.stderr


@pytest.mark.django_db
def test_postgresql_connections_come_from_the_pool():
    pooled = getattr(connection, "pool", None) is not None
    assert pooled == (connection.vendor == "postgresql")

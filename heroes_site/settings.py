"""Settings for the Heroes site, read from the environment (and `.env` when present).

Every variable is documented in `.env.example`. A misconfiguration raises
ImproperlyConfigured with one readable line; `manage.py`, `asgi.py` and `wsgi.py`
print that line instead of a traceback.
"""

import tomllib
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from heroes_site.environment import Environment

BASE_DIR = Path(__file__).resolve().parent.parent

environ.Env.read_env(BASE_DIR / ".env")  # never overrides variables already set
env = Environment()  # each read checked: a bad value is one line naming the variable


def package_version() -> str:
    with open(BASE_DIR / "pyproject.toml", "rb") as pyproject:
        return str(tomllib.load(pyproject)["project"]["version"])


def database_config(url: str) -> dict[str, Any]:
    """Turn DATABASE_URL into a Django database dict, or fail with one readable line."""
    invalid = ImproperlyConfigured(
        "DATABASE_URL must look like sqlite:///db.sqlite3 or "
        "postgres://USER:PASSWORD@HOST:5432/NAME"
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # environ warns about unknown schemes
            config: dict[str, Any] = environ.Env.db_url_config(url)
    except ValueError:
        raise invalid from None
    engine = config.get("ENGINE")
    if not config.get("NAME") or engine not in (
        "django.db.backends.sqlite3",
        "django.db.backends.postgresql",
    ):
        raise invalid
    if engine == "django.db.backends.sqlite3":
        if config["NAME"] != ":memory:":
            config["NAME"] = str(BASE_DIR / config["NAME"])  # relative to the repo root
        return config
    # A psycopg pool per process instead of a connection per request. The pool needs
    # CONN_MAX_AGE = 0; a request that cannot get a connection within `timeout`
    # seconds fails instead of hanging. A connection that cannot be made is retried
    # after 1 s, 2 s, then at `reconnect_timeout`, and later when a request needs one:
    # psycopg_pool's default (5 minutes, the delay doubling) would leave a promoted
    # standby unused for half a minute and more (heroes_site.db.failover).
    # The URL's query (sslmode=..., target_session_attrs=...) is libpq's: kept, so a
    # URL naming several hosts with target_session_attrs=read-write follows the primary.
    config["CONN_MAX_AGE"] = 0
    config["OPTIONS"] = {
        "connect_timeout": 5,
        **config.get("OPTIONS", {}),
        "pool": dict(database_pool),
    }
    return config


def replica_config(alias: str, url: str) -> dict[str, Any]:
    """A read replica's database dict (heroes_site.replicas): the primary's kind, with
    short timeouts, reads that fail over and writes refused (the replica backend)."""
    invalid = ImproperlyConfigured(
        "DATABASE_REPLICA_URLS must be a comma-separated list of "
        "postgres://USER:PASSWORD@HOST:5432/NAME"
    )
    try:
        config = database_config(url)
    except ImproperlyConfigured:
        raise invalid from None
    if config["ENGINE"] != "django.db.backends.postgresql":
        raise invalid
    config["ENGINE"] = "heroes_site.replica_backend"
    # A read waits this long for a replica's connection before it is served elsewhere.
    config["OPTIONS"]["pool"]["timeout"] = replica_timeout
    config["OPTIONS"]["pool"]["name"] = alias  # in psycopg's log lines
    config["OPTIONS"]["connect_timeout"] = 2  # libpq's minimum
    # Tests: the replica alias points at the test database, which replication copies.
    config["TEST"] = {"MIRROR": "default"}
    return config


DEBUG: bool = env.flag("DEBUG", False)

SECRET_KEY: str = env.text("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set: it is required when DEBUG is False (see .env.example)"
        )
    SECRET_KEY = "django-insecure-development-only"  # noqa: S105 (DEBUG only)

ALLOWED_HOSTS: list[str] = env.text_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS: list[str] = env.text_list("CSRF_TRUSTED_ORIGINS", [])

PROJECT_NAME: str = env.text("PROJECT_NAME", "Heroes")
VERSION: str = env.text("VERSION", "") or package_version()
DESCRIPTION: str = env.text("DESCRIPTION", "The API for Heroes app.")
API_V1_PREFIX: str = env.text("API_V1_PREFIX", "/api/v1")
if not API_V1_PREFIX.startswith("/") or not API_V1_PREFIX.strip("/"):
    raise ImproperlyConfigured(
        f"API_V1_PREFIX must be a path such as /api/v1, not {API_V1_PREFIX!r}"
    )

# Bounded requests: a body over DATA_UPLOAD_MAX_MEMORY_SIZE bytes is refused with 413
# before it is read (heroes_site.asgi, heroes_site.middleware.request_body_limit); a request
# line plus headers over MAX_REQUEST_HEADER_SIZE bytes with 431 (heroes_site.server).
DATA_UPLOAD_MAX_MEMORY_SIZE: int = env.whole_number(
    "DATA_UPLOAD_MAX_MEMORY_SIZE", 2_621_440, minimum=1, unit="bytes"
)  # 2.5 MB
MAX_REQUEST_HEADER_SIZE: int = env.whole_number(
    "MAX_REQUEST_HEADER_SIZE", 64 * 1024, minimum=1, unit="bytes"
)
# Slow clients: under make serve a connection whose request head has not arrived whole
# this many seconds after it opened, or after its previous response, is closed.
REQUEST_HEAD_TIMEOUT = env.seconds("REQUEST_HEAD_TIMEOUT", 10.0)

# make serve's gunicorn reads WEB_CONCURRENCY (heroes_site/gunicorn.conf.py), and fails
# on a bad one with a traceback before it reads its configuration; make serve runs
# manage.py first, which stops on it here with one line.
env.whole_number("WEB_CONCURRENCY", 2, minimum=1)

# Served over HTTPS, usually behind a TLS-terminating proxy that sets X-Forwarded-Proto.
HTTPS: bool = env.flag("HTTPS", not DEBUG)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 60 * 60 * 24 * 365
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

INSTALLED_APPS = [
    "heroes_site.apps.AdminConfig",  # django.contrib.admin, with the site's admin site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic.runserver_nostatic",  # servestatic serves static files in development too
    "django.contrib.staticfiles",
    "ninja",  # serves Swagger UI's files itself (no CDN)
    "axes",
    "heroes",
    "heroes_site",  # the site's template tags and its migrate command
]

MIDDLEWARE = [
    "heroes_site.middleware.request_log",
    "heroes_site.db.writers.attribute_writes",
    "heroes_site.middleware.api_errors_as_json",
    "heroes_site.middleware.content_security_policy",
    "heroes_site.replicas.replica_reads",
    "django.middleware.security.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "heroes_site.middleware.bounded_logins",
    "heroes_site.middleware.private_for_sessions",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "heroes_site.middleware.DatabaseUnavailableMiddleware",
    # Async-capable: it turns a lockout into the 429 page (axes wants it last).
    "axes.middleware.AxesMiddleware",
    # Last, so its 413 passes through the others (log line, security headers) and
    # comes before any view or process_view (the CSRF check) reads the body.
    "heroes_site.middleware.request_body_limit",
]

ROOT_URLCONF = "heroes_site.urls"
TEST_RUNNER = "heroes_site.test_runner.PytestSuite"  # manage.py test points to make test
WSGI_APPLICATION = "heroes_site.wsgi.application"
ASGI_APPLICATION = "heroes_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# PostgreSQL's pools, per process (read, and so checked, whichever the database).
database_pool = {
    "min_size": env.whole_number("DATABASE_POOL_MIN_SIZE", 2),
    "max_size": env.whole_number("DATABASE_POOL_MAX_SIZE", 10, minimum=1),
    "timeout": env.seconds("DATABASE_POOL_TIMEOUT", 3.0),
    "reconnect_timeout": 5.0,  # see database_config
}
if database_pool["max_size"] < database_pool["min_size"]:
    raise ImproperlyConfigured(
        f"DATABASE_POOL_MAX_SIZE ({database_pool['max_size']}) must be at least "
        f"DATABASE_POOL_MIN_SIZE ({database_pool['min_size']})"
    )
replica_timeout = env.seconds("DATABASE_REPLICA_TIMEOUT", 1.0)
DATABASES = {"default": database_config(env.text("DATABASE_URL", "sqlite:///db.sqlite3"))}
# Read replicas (SPEC §12): every alias but "default" is one. The router sends
# anonymous reads to them and everything else to "default"; without replicas it
# sends everything to "default".
for number, url in enumerate(env.text_list("DATABASE_REPLICA_URLS", []), start=1):
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_REPLICA_URLS needs a PostgreSQL DATABASE_URL")
    DATABASES[f"replica_{number}"] = replica_config(f"replica_{number}", url.strip())
DATABASE_ROUTERS = ["heroes_site.replicas.ReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]

CSRF_FAILURE_VIEW = "heroes_site.views.csrf_failure"  # templates/403_csrf.html

# django-axes refuses a login before the password is checked once its (username, client
# address) pair has failed AXES_FAILURE_LIMIT times within the cool-off.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

AXES_FAILURE_LIMIT = env.whole_number("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(
    minutes=env.whole_number("AXES_COOLOFF_MINUTES", 15, minimum=1, unit="minutes")
)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# ...and one client address after this many failures within the cool-off, whatever the
# usernames (heroes_site.lockout.AddressLockingHandler).
AXES_ADDRESS_FAILURE_LIMIT = env.whole_number("AXES_ADDRESS_FAILURE_LIMIT", 30, minimum=1)
# Each attempt while locked restarts the cool-off (axes' default; the 429 page says so).
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = True
# Attempts live in the database, so every worker and replica counts the same failures.
AXES_HANDLER = "heroes_site.lockout.AddressLockingHandler"  # axes' database handler, and more
# The socket's peer, which the server (uvicorn, gunicorn) has already replaced with the
# X-Forwarded-For address only when the peer is one of its FORWARDED_ALLOW_IPS.
AXES_CLIENT_IP_CALLABLE = "heroes_site.lockout.client_address"
AXES_LOCKOUT_CALLABLE = "heroes_site.lockout.locked_out"  # templates/registration/locked_out.html
# axes logs its lockout decisions at WARNING; not verbose keeps the client's
# User-Agent out of those lines (the username and address are masked).
AXES_VERBOSE = False

# Logging in hashes the password on purpose slowly, and the lockout's queries and the
# hash hold a pooled database connection: at most this many login attempts run at once
# in a server process (heroes_site.middleware.bounded_logins), fewer than the pool's
# connections; one that finds no place within LOGIN_WAIT seconds gets the busy page (503).
LOGINS_AT_ONCE = env.whole_number("LOGINS_AT_ONCE", 2, minimum=1)
LOGIN_WAIT = env.seconds("LOGIN_WAIT", 5.0)

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "heroes:list"
LOGOUT_REDIRECT_URL = "heroes:list"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / env.text("STATIC_ROOT", "staticfiles")  # relative to the repo
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # In production, collectstatic writes hashed, compressed copies that servestatic
    # serves with far-future cache headers; development serves the source files.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "servestatic.storage.CompressedManifestStaticFilesStorage"
    },
}
# Development (and tests) serve files straight from the app and static/ folders.
SERVESTATIC_USE_FINDERS = DEBUG
SERVESTATIC_AUTOREFRESH = DEBUG

# Nothing is kept in process memory between requests: sessions live in the database
# and messages in the session, so any replica can serve any request.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

LOG_FORMAT: str = env.one_of("LOG_FORMAT", "text", ["text", "json"])
LOG_LEVEL: str = env.one_of("LOG_LEVEL", "INFO", ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    # Both formats escape control characters: a request cannot forge or hide lines.
    "formatters": {
        "text": {
            "class": "heroes_site.log_formats.TextFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"class": "heroes_site.log_formats.JsonFormatter"},
    },
    "filters": {
        "suspicious_requests": {"()": "heroes_site.log_formats.SuspiciousRequestsAsWarnings"},
        "request_id": {"()": "heroes_site.log_formats.RequestId"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["suspicious_requests", "request_id"],
        }
    },
    # One handler writes every line once. Django's default logging gives "django" a
    # plain console handler of its own under DEBUG (and mail to ADMINS), so each of its
    # lines would be written twice: handlers [] removes them.
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": [], "propagate": True},
        # heroes.requests already logs every request; keep Django's own 4xx notes out,
        # and runserver's line per request (django.server), which Django's default
        # logging writes with a handler of its own, not at all.
        "django.request": {"level": "ERROR"},
        "django.server": {"handlers": [], "level": "CRITICAL", "propagate": True},
        "axes": {"level": "WARNING"},  # its lockout notes, not two lines per login
    },
}

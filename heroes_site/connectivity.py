"""Whether a database answers, told in one line: for `migrate` and the server's start
(heroes_site.management.commands.migrate, check_database), which stop on it."""

import re

import psycopg
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

# libpq's preamble, which the line already says better: "connection failed: connection
# to server at "127.0.0.1", port 5432 failed: FATAL:  ".
LIBPQ_PREAMBLE = re.compile(
    r"^(connection failed: )?(connection to server at .*?, port \d+ failed: )?(FATAL: +)?"
)


def unreachable(alias: str = DEFAULT_DB_ALIAS) -> str | None:
    """None when the database answers; else one line with its host, port and name and
    the server's own reason.

    PostgreSQL is asked on a connection of its own: through Django's pool, a database
    that is down or missing is a warning from the pool for every attempt until its
    timeout, then a traceback that ends in "couldn't get a connection".
    """
    connection = connections[alias]
    try:
        if connection.vendor == "postgresql":
            with psycopg.connect(**connection.get_connection_params()):
                pass
        else:
            connection.ensure_connection()
    except (psycopg.Error, DatabaseError) as error:
        return f"Cannot connect to the database {where(alias)}: {reason(error)}"
    return None


def where(alias: str) -> str:
    """The database as a person would name it: `heroes` at 127.0.0.1:5432 (no password)."""
    database = connections[alias].settings_dict
    if connections[alias].vendor != "postgresql":
        return str(database["NAME"])
    return f"{database['NAME']} at {database['HOST'] or 'localhost'}:{database['PORT'] or 5432}"


def reason(error: Exception) -> str:
    """The server's (or libpq's) reason, on one line."""
    lines = [LIBPQ_PREAMBLE.sub("", line.strip()) for line in str(error).splitlines()]
    sentences = [line if line[-1] in ".?!" else f"{line}." for line in lines if line]
    return " ".join(sentences).removesuffix(".") or type(error).__name__

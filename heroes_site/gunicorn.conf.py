"""gunicorn settings for `make serve`: uvicorn workers running the ASGI app.

gunicorn -c heroes_site/gunicorn.conf.py heroes_site.asgi:application
"""

import gc
import http.client
import subprocess
import sys
import threading
import time
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

from heroes_site.environment import Environment

MANAGE = Path(__file__).resolve().parent.parent / "manage.py"

# Read from the environment only (not .env), as gunicorn's own settings are.
try:
    env = Environment()
    # The platform convention (Heroku, Render, ...): listen on $PORT on every interface.
    port = env.whole_number("PORT", 8000, maximum=65535)  # 0: any free port
    workers = env.whole_number("WEB_CONCURRENCY", 2, minimum=1)
    # The TLS-terminating proxy in front of us may set X-Forwarded-* (see HTTPS in .env.example).
    forwarded_allow_ips = env.text("FORWARDED_ALLOW_IPS", "127.0.0.1")
except ImproperlyConfigured as error:
    sys.exit(f"Configuration error: {error}")

bind = f"0.0.0.0:{port}"
# uvicorn's worker, refusing request heads over MAX_REQUEST_HEADER_SIZE (431).
worker_class = "heroes_site.server.BoundedUvicornWorker"

# A worker silent this long is restarted; on shutdown or reload, requests in flight
# get this long to finish.
timeout = 30
graceful_timeout = 30
keepalive = 5

# No control socket: gunicorn would otherwise create ~/.gunicorn/gunicorn.ctl.
control_socket_disable = True

# The app logs one line per request itself (heroes.requests, with its request id).
accesslog = None
errorlog = "-"


def on_starting(server: Arbiter) -> None:
    """Before anything listens: the app's settings and its database, checked by
    `manage.py check_database`, so a mistake is one line and gunicorn stops, rather
    than every worker failing to boot in turn (or serving 503s from the start). In a
    process of its own: the master stays free of Django, so a reload (HUP) starts
    workers with the code and settings as they are then."""
    checked = subprocess.run([sys.executable, str(MANAGE), "check_database"], check=False)  # noqa: S603
    if checked.returncode:
        sys.exit(checked.returncode)


def when_ready(server: Arbiter) -> None:
    """Once a worker answers, say where, in one line (the workers load the app first)."""
    threading.Thread(target=say_when_ready, args=(server,), daemon=True).start()


def say_when_ready(server: Arbiter, patience: float = 120) -> None:
    host, port = server.LISTENERS[0].sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):  # noqa: S104 (every interface: this machine is one)
        host = "127.0.0.1"
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection(host, port, timeout=5)
        try:
            connection.request("GET", "/", headers={"X-Request-ID": "ready-check"})
            redirect = connection.getresponse().getheader("Location", "")
        except OSError:
            time.sleep(0.1)
            continue
        finally:
            connection.close()
        note = ""
        if redirect.startswith("https:"):
            note = " (it redirects to https: for plain http on localhost, HTTPS=False)"
        server.log.info("ready at http://%s:%s%s", host, port, note)
        return
    server.log.warning("no worker answered within %d s", patience)


def post_worker_init(worker: Worker) -> None:
    """The worker has loaded the app. Before it serves, it learns whether migrations
    are pending (health's answer, heroes_site.migrations_state), while its database
    connections are free. The app lives as long as the worker: keep it out of the
    garbage collector's full scans, which would otherwise walk all of Django each time
    (measured with make bench: 3-7% more requests a second, lower p99)."""
    from django.db import connections

    from heroes_site.migrations_state import state

    state.check()
    connections.close_all()  # the connection goes back to the pool
    gc.freeze()

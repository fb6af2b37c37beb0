"""ASGI entry point: `gunicorn -k uvicorn_worker.UvicornWorker heroes_site.asgi:application`."""

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import django
from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heroes_site.settings")


class ASGIHandler(DjangoASGIHandler):
    """Django's ASGI handler, lending each request a sync thread from a free list.

    Django runs a request's sync work (each async ORM call, sync middleware, its
    request_started/finished signals) on one thread of its own, started for the
    request and stopped after it; on small API requests starting that thread was the
    largest single cost. Here the one-thread executors are kept and lent again. It
    is still one request, one thread at a time, so the request's database connection
    goes back to the pool at its end exactly as before.
    """

    max_idle_executors = 64

    def __init__(self) -> None:
        self.idle_executors: list[ThreadPoolExecutor] = []
        super().__init__()

    def load_middleware(self, is_async: bool = False) -> None:
        """settings.MIDDLEWARE, with Django's classes swapped for their event-loop
        twins from heroes.middleware (same behaviour, no thread hop per hook)."""
        configured = settings.MIDDLEWARE
        settings.MIDDLEWARE = [EVENT_LOOP_TWINS.get(path, path) for path in configured]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = configured  # only while the chain is built, at startup

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)  # Django refuses it
        executor = (
            self.idle_executors.pop()
            if self.idle_executors
            else ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")
        )
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            if len(self.idle_executors) < self.max_idle_executors:
                self.idle_executors.append(executor)
            else:
                executor.shutdown(wait=False)


try:
    django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application() does
    from heroes.middleware import EVENT_LOOP_TWINS  # needs the apps loaded

    application = ASGIHandler()
except ImproperlyConfigured as error:
    sys.exit(f"Configuration error: {error}")

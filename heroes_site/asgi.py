"""ASGI entry point: `gunicorn -k uvicorn_worker.UvicornWorker heroes_site.asgi:application`."""

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from importlib import import_module

import django
from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heroes_site.settings")


class ASGIHandler(DjangoASGIHandler):
    """Django's ASGI handler, with two costs of its own removed.

    - Django runs each hook of a sync-style middleware (process_request,
      process_response, process_view) in a worker thread, one hop per hook and
      request; the hooks of Django's own middleware only read headers and cookies, so
      the hops cost more than the hooks. settings.MIDDLEWARE keeps Django's names (the
      deployment checks look for them); this handler loads their event-loop twins from
      heroes.middleware in their place.
    - Django gives each request a thread of its own for its sync work (each async ORM
      call, the request signals), and at the end of the request joins that thread,
      blocking the event loop meanwhile. Here the thread is let go instead: it ends
      by itself once its last call is done. (Reusing the threads across requests was
      faster still on average, but left some requests waiting for up to a second.)
    """

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)  # Django refuses it
        # Still one thread per request, so the request's database connection goes back
        # to the pool when the request ends, as with Django's handler.
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            executor.shutdown(wait=False)

    def load_middleware(self, is_async: bool = False) -> None:
        configured = settings.MIDDLEWARE
        settings.MIDDLEWARE = [EVENT_LOOP_TWINS.get(path, path) for path in configured]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = configured  # only while the chain is built, at startup


try:
    django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application() does
    from heroes.middleware import EVENT_LOOP_TWINS  # needs the apps loaded

    application = ASGIHandler()
    # The API, the pages and the admin load now, not on the first request: a mistake
    # shows at start-up, and gunicorn's post_worker_init finds them loaded.
    import_module(settings.ROOT_URLCONF)
except ImproperlyConfigured as error:
    sys.exit(f"Configuration error: {error}")

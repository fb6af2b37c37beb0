"""ASGI entry point: `gunicorn -c heroes_site/gunicorn.conf.py heroes_site.asgi:application`."""

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from importlib import import_module
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heroes_site.settings")

Message = Mapping[str, Any]  # an ASGI event
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BoundedBody:
    """One request's receive and send, reading at most DATA_UPLOAD_MAX_MEMORY_SIZE
    bytes of its body.

    Django's read_body writes the whole body to a temporary file (on disk past
    FILE_UPLOAD_MAX_MEMORY_SIZE) before any middleware or view runs: 3 GiB announced
    were 3 GiB written. Here a body announced larger than the limit is not read at all
    (nor is `100 Continue` sent), and one that turns out larger (chunked, no
    Content-Length) is cut where it passes the limit. Either way Django gets an empty
    body and a mark in the scope, on which heroes_site.middleware.request_body_limit
    answers 413; the response closes the connection, so the server reads no more.
    """

    def __init__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        self.scope = scope
        self.server_receive = receive
        self.server_send = send
        self.received = 0
        self.cut = False
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and body_over_limit(int(value)):
                scope[BODY_TOO_LARGE] = True

    async def receive(self) -> Message:
        if self.scope.get(BODY_TOO_LARGE):
            if self.cut:
                # Django listens for a disconnect while the response is made, and
                # would take more body for a protocol error: nothing comes, and the
                # response's end ends the wait.
                never: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
                return await never
            self.cut = True
            return {"type": "http.request", "body": b"", "more_body": False}
        message = await self.server_receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if body_over_limit(self.received):
                self.scope[BODY_TOO_LARGE] = True
                return await self.receive()
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and self.scope.get(BODY_TOO_LARGE):
            message = {**message, "headers": [*message["headers"], (b"connection", b"close")]}
        await self.server_send(message)


class ASGIHandler(DjangoASGIHandler):
    """Django's ASGI handler, with two costs of its own removed, and request bodies
    bounded (BoundedBody).

    - Django runs each hook of a sync-style middleware (process_request,
      process_response, process_view) in a worker thread, one hop per hook and
      request. settings.MIDDLEWARE keeps Django's names (the deployment checks look
      for them); this handler loads their event-loop twins
      (heroes_site.event_loop_middleware.EVENT_LOOP_TWINS) in their place.
    - Django gives each request a thread of its own for its sync work (each async ORM
      call, the request signals), and at the end of the request joins that thread,
      blocking the event loop meanwhile. Here the thread is let go instead: it ends
      by itself once its last call is done. (Reusing the threads across requests was
      faster still on average, but left some requests waiting for up to a second.)
    """

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)  # Django refuses it
        # Still one thread per request, so the request's database connection goes back
        # to the pool when the request ends, as with Django's handler.
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")
        try:
            body = BoundedBody(scope, receive, send)
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, body.receive, body.send)
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
    # Need the apps loaded.
    from heroes_site.event_loop_middleware import EVENT_LOOP_TWINS
    from heroes_site.middleware import BODY_TOO_LARGE, body_over_limit

    application = ASGIHandler()
    # The API, the pages and the admin load now, not on the first request: a mistake
    # shows at start-up, and gunicorn's post_worker_init finds them loaded.
    import_module(settings.ROOT_URLCONF)
except ImproperlyConfigured as error:
    sys.exit(f"Configuration error: {error}")
